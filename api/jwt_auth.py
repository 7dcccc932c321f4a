"""Signed bearer tokens (JWTs) from the health plan's identity provider.

:class:`JwtVerifier` is the production :class:`~api.identity.TokenVerifier`
(``CARELOOM_AUTH_MODE=jwt``): verified with the IdP's public key (or a shared
secret for HS256), the IdP's role names mapped to careloom roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jwt

from api.identity import ROLES, AuthError, Identity
from guardrails.policy import Role, max_role
from runtime.errors import ConfigurationError

__all__ = ["JwtVerifier"]

_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
_SIGN_IN_AGAIN = "sign in again to get a fresh token"


def _algorithm_family(algorithm: str) -> str:
    return "hmac" if algorithm.upper().startswith("HS") else "public-key"


class JwtVerifier:
    """The production :class:`TokenVerifier`: JWTs signed by the health plan's identity provider.

    ``key`` is the IdP's public key as PEM (RS256, PS256, ES256, ...) or a shared
    secret (HS256/384/512, at least as long as the hash). A token must be signed
    with one of ``algorithms`` and carry ``exp``, ``iss`` (= ``issuer``), ``aud``
    (containing ``audience``) and ``sub``; clocks may differ by ``leeway_seconds``.
    The user id comes from ``user_claim``, the display name from ``name_claim``.
    ``roles_claim`` (a string or a list of strings) holds the IdP's role names;
    ``role_map`` maps them to careloom roles (default: the names ``care_coordinator``,
    ``rn`` and ``md`` themselves). Unknown names are ignored; if several map, the
    highest role (``ROLE_RANK``) wins; if none does, the token is refused.

    A misconfiguration (no algorithm, ``none``, a private key, a short secret, a key
    that does not fit an algorithm, symmetric and public-key algorithms mixed) raises
    :class:`~runtime.errors.ConfigurationError` here, not on the first request.
    """

    def __init__(
        self,
        key: str | None,
        algorithms: list[str],
        issuer: str,
        audience: str,
        roles_claim: str = "roles",
        user_claim: str = "sub",
        leeway_seconds: int = 30,
        role_map: Mapping[str, Role] | None = None,
        name_claim: str | None = "name",
        jwks_url: str | None = None,
        jwks_refresh_cooldown_seconds: float = 30,
    ) -> None:
        if not algorithms:
            raise ConfigurationError("JWT verifier: no algorithms given; name the IdP's, e.g. ['RS256']")
        if any(a.lower() == "none" for a in algorithms):
            raise ConfigurationError("JWT verifier: algorithm 'none' accepts unsigned tokens; remove it")
        if len({_algorithm_family(a) for a in algorithms}) > 1:
            # A public key used as an HMAC secret is the classic algorithm-confusion attack.
            raise ConfigurationError(
                f"JWT verifier: algorithms {algorithms} mix shared-secret (HS*) and public-key "
                "algorithms; configure one kind")
        if not key and not jwks_url:
            raise ConfigurationError("JWT verifier: no key; give the IdP's JWKS URL, its public key (PEM) or the "
                                     "HS256 secret")
        if jwks_url and any(_algorithm_family(a) == "hmac" for a in algorithms):
            raise ConfigurationError("JWT verifier: a JWKS holds public keys; HS* algorithms cannot use it")
        prepared: Any = None
        for algorithm in algorithms if key else ():
            try:
                implementation = jwt.get_algorithm_by_name(algorithm)
            except NotImplementedError:
                raise ConfigurationError(
                    f"JWT verifier: unknown algorithm {algorithm!r}; use e.g. RS256, ES256 or HS256") from None
            try:
                prepared = implementation.prepare_key(key)
            except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
                wanted = ("a PEM public key" if _algorithm_family(algorithm) == "public-key"
                          else "a shared secret")
                raise ConfigurationError(
                    f"JWT verifier: the key is not a valid {algorithm} key ({exc}); "
                    f"give {wanted} for {algorithm}") from None
            if hasattr(prepared, "private_bytes"):
                raise ConfigurationError(
                    "JWT verifier: the key is a private key; give the identity provider's public key")
            too_short = implementation.check_key_length(prepared)
            if too_short:
                raise ConfigurationError(f"JWT verifier: {too_short} Use a longer key.")
        if not issuer:
            raise ConfigurationError("JWT verifier: no issuer; give the IdP's issuer URL (the 'iss' claim)")
        if not audience:
            raise ConfigurationError("JWT verifier: no audience; give careloom's audience (the 'aud' claim)")
        if leeway_seconds < 0:
            raise ConfigurationError("JWT verifier: leeway_seconds must not be negative")
        mapping = dict(role_map) if role_map is not None else {role: role for role in ROLES}
        bad = {name: role for name, role in mapping.items() if role not in ROLES}
        if bad:
            raise ConfigurationError(
                f"JWT verifier: role_map maps to unknown careloom roles {bad}; use {', '.join(ROLES)}")
        self._key = prepared  # parsed once, not on every request
        # The key set is cached for ten minutes; a token with an unknown key id makes the client refetch it
        # (the IdP rotated its keys), at most once per cooldown, so rotation needs no restart and garbage key
        # ids cannot make careloom hammer the IdP.
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=600, timeout=5,
                                     cooldown_duration=jwks_refresh_cooldown_seconds) if jwks_url else None
        self.jwks_url = jwks_url
        self.algorithms = list(algorithms)
        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles_claim
        self.user_claim = user_claim
        self.name_claim = name_claim
        self.leeway_seconds = leeway_seconds
        self.role_map: dict[str, Role] = mapping

    def verify(self, token: str) -> Identity:
        """The identity in a valid token; :class:`AuthError` with the precise reason otherwise."""
        claims = self.claims(token)
        return Identity(user_id=self._user_id(claims), role=self._role(claims),
                        display_name=self._display_name(claims))

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of a valid token; :class:`AuthError` otherwise."""
        try:
            return jwt.decode(
                token,
                self._signing_key(token),
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(self._reason(token, exc)) from None

    def _signing_key(self, token: str) -> Any:  # noqa: ANN401 - a prepared key of any algorithm
        if self._jwks is None:
            return self._key
        header = jwt.get_unverified_header(token)  # DecodeError for a malformed token
        if header.get("alg") not in self.algorithms:
            raise jwt.InvalidAlgorithmError(f"alg {header.get('alg')!r}")
        try:
            return self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthError(f"the identity provider's keys could not be fetched from {self.jwks_url} ({exc}); "
                            "retry, and check CARELOOM_JWT_JWKS_URL") from None
        except jwt.PyJWKClientError:
            raise AuthError(f"unknown key id {header.get('kid')!r}: the identity provider publishes no such key "
                            f"at {self.jwks_url} (forged, or from another identity provider); "
                            f"{_SIGN_IN_AGAIN}") from None

    def _reason(self, token: str, exc: jwt.PyJWTError) -> str:
        # Claims read without verification are used only for errors raised *after* the
        # signature checked out (PyJWT verifies the signature before the claims).
        if isinstance(exc, jwt.ExpiredSignatureError):
            expired = _unverified_claims(token).get("exp")
            when = (datetime.fromtimestamp(expired, UTC).isoformat().replace("+00:00", "Z")
                    if isinstance(expired, int | float) else "an earlier time")
            return f"token expired at {when}: {_SIGN_IN_AGAIN}"
        if isinstance(exc, jwt.InvalidAudienceError):
            return (f"wrong audience: the token is for {_unverified_claims(token).get('aud')!r}, "
                    f"careloom accepts {self.audience!r}; request a token for {self.audience!r}")
        if isinstance(exc, jwt.InvalidIssuerError):
            return (f"wrong issuer: the token is from {_unverified_claims(token).get('iss')!r}, "
                    f"careloom trusts {self.issuer!r}; sign in with that identity provider")
        if isinstance(exc, jwt.InvalidSignatureError):
            return ("bad signature: the token was not signed with the identity provider's key "
                    "careloom trusts (forged, altered, or from another key); " + _SIGN_IN_AGAIN)
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return (f"token has no {exc.claim!r} claim; careloom requires "
                    f"{', '.join(_REQUIRED_CLAIMS)}: configure the identity provider to include it")
        if isinstance(exc, jwt.ImmatureSignatureError | jwt.InvalidIssuedAtError):
            return "token is not valid yet (nbf/iat in the future): check the clocks, then retry"
        if isinstance(exc, jwt.InvalidAlgorithmError):
            return (f"token algorithm is not allowed: careloom accepts {', '.join(self.algorithms)}; "
                    "use a token from the configured identity provider")
        if isinstance(exc, jwt.exceptions.InvalidSubjectError):
            return "token 'sub' claim is not a string: configure the identity provider"
        if isinstance(exc, jwt.DecodeError):
            return f"malformed token ({exc}): send the JWT exactly as the identity provider issued it"
        return f"invalid token ({exc}): {_SIGN_IN_AGAIN}"

    def _user_id(self, claims: dict[str, Any]) -> str:
        user_id = claims.get(self.user_claim)
        if not isinstance(user_id, str) or not user_id.strip():
            raise AuthError(
                f"token has no user claim {self.user_claim!r} (a non-empty string): "
                "configure the identity provider to include it")
        return user_id

    def _role(self, claims: dict[str, Any]) -> Role:
        if self.roles_claim not in claims:
            raise AuthError(f"token has no careloom role claim {self.roles_claim!r}")
        value = claims[self.roles_claim]
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise AuthError(
                f"token role claim {self.roles_claim!r} must be a string or a list of strings: "
                "configure the identity provider")
        roles = [self.role_map[name] for name in names if name in self.role_map]
        if not roles:
            raise AuthError(
                f"token roles {names} include no careloom role (known: {', '.join(sorted(self.role_map))}): "
                "ask an administrator to assign one")
        return max_role(roles)  # not None: roles is not empty

    def _display_name(self, claims: dict[str, Any]) -> str | None:
        if self.name_claim is None:
            return None
        name = claims.get(self.name_claim)
        return name if isinstance(name, str) and name.strip() else None


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
