"""Choosing the token verifier from settings, and resolving who is acting in the CLI."""

from __future__ import annotations

from api.identity import AuthError, Identity, TokenVerifier
from api.jwt_auth import JwtVerifier
from api.users import UserDirectory
from runtime.settings import Settings

__all__ = ["acting_identity", "make_verifier"]


def make_verifier(settings: Settings) -> TokenVerifier:
    """Embedded default: the users file with hashed API tokens; production: the IdP's signed JWTs."""
    if settings.auth_mode == "jwt":
        if settings.jwt_key_file is None or settings.jwt_issuer is None or settings.jwt_audience is None:
            raise AuthError("JWT mode needs CARELOOM_JWT_KEY_FILE, CARELOOM_JWT_ISSUER and CARELOOM_JWT_AUDIENCE")
        return JwtVerifier(settings.jwt_key_file.read_text(), algorithms=settings.jwt_algorithms,
                           issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                           roles_claim=settings.jwt_roles_claim)
    return UserDirectory(settings.users_path)


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
