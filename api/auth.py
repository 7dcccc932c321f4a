"""Choosing the token verifier from settings, and resolving who is acting in the CLI."""

from __future__ import annotations

from api.identity import AuthError, Identity, TokenVerifier
from api.jwt_auth import JwtVerifier
from api.users import UserDirectory
from runtime.settings import Settings

__all__ = ["acting_identity", "jwt_verifier", "make_verifier"]


def make_verifier(settings: Settings) -> TokenVerifier:
    """Embedded default: the users file with hashed API tokens; production: the IdP's signed JWTs."""
    if settings.auth_mode == "jwt":
        return jwt_verifier(settings, audience=settings.jwt_audience)
    return UserDirectory(settings.users_path)


def jwt_verifier(settings: Settings, *, audience: str | None) -> JwtVerifier:
    """The IdP's tokens for ``audience`` (careloom's API audience; the inbox client id for ID tokens)."""
    if settings.jwt_issuer is None or audience is None:
        raise AuthError("JWT mode needs CARELOOM_JWT_ISSUER and CARELOOM_JWT_AUDIENCE")
    jwks_url = settings.jwt_jwks_url
    if settings.jwt_key_file is None and jwks_url is None and settings.oidc_issuer:
        from api.oidc import discover

        jwks_url = discover(settings.oidc_issuer)["jwks_uri"]
    key = settings.jwt_key_file.read_text() if settings.jwt_key_file else None
    return JwtVerifier(key, algorithms=settings.jwt_algorithms, issuer=settings.jwt_issuer, audience=audience,
                       roles_claim=settings.jwt_roles_claim, user_claim=settings.jwt_user_claim,
                       leeway_seconds=settings.jwt_leeway_seconds, role_map=settings.jwt_role_map,
                       jwks_url=jwks_url)


def acting_identity(settings: Settings, *, as_user: str | None, token: str | None) -> Identity:
    """Who runs a CLI decision: a token is verified; ``--as`` is looked up in the local users file."""
    if token:
        return make_verifier(settings).verify(token)
    if as_user:
        found = UserDirectory(settings.users_path).get(as_user)
        if found is None:
            raise AuthError(f"unknown user {as_user!r} in {settings.users_path}; add it with "
                            f"`careloom users add {as_user} --role rn` or pass --token")
        return found
    raise AuthError("say who decides: --as USER (local users file) or --token TOKEN")
