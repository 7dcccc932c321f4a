"""Inbox sign-in with OpenID Connect: the authorization-code flow with PKCE (S256), through Authlib.

``/auth/login`` sends the browser to the identity provider with a fresh ``state``, ``nonce`` and PKCE
challenge (kept server-side, one use, ten minutes); ``/auth/callback`` exchanges the code (with the
verifier) at the token endpoint, verifies the ID token (signature by the IdP's JWKS, issuer, audience = the
client id, expiry with leeway, the nonce) and maps its role claim to a careloom role, then opens an inbox
session (:mod:`api.sessions`) that ends when the ID token expires: the role is re-read from the IdP at the
next sign-in, so a role withdrawn there lasts no longer than one ID token. The ID and access tokens themselves
are not kept.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from api.identity import AuthError, Identity
from api.jwt_auth import JwtVerifier
from runtime.errors import ConfigurationError
from store.database import Database, Rows

__all__ = ["OidcLogin", "discover"]

PENDING_TTL = timedelta(minutes=10)


@lru_cache(maxsize=8)
def discover(issuer: str) -> dict[str, Any]:
    """The issuer's discovery document (read once per process)."""
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as err:
        raise ConfigurationError(f"CARELOOM_OIDC_ISSUER: cannot read {url} ({err}); check the issuer URL") from None
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if k not in document]
    if missing or document.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise ConfigurationError(f"CARELOOM_OIDC_ISSUER: {url} is not the discovery document of {issuer} "
                                 f"(issuer {document.get('issuer')!r}, missing {missing})")
    return document


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class _Pending:
    """state → (PKCE verifier, nonce, where to go next), one use each, in the care records database (shared by
    every API host: the callback may reach another host than the one that started the sign-in)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, state: str, verifier: str, nonce: str, next_url: str, browser: str) -> None:
        now = datetime.now(UTC)

        def add(db: Rows) -> None:
            db.rows("DELETE FROM oidc_pending WHERE created_at < :old", {"old": (now - PENDING_TTL).isoformat()})
            db.rows("INSERT INTO oidc_pending (state, verifier, nonce, next, created_at, browser) "
                    "VALUES (:s, :v, :n, :x, :at, :b)", {"s": state, "v": verifier, "n": nonce, "x": next_url,
                                                        "at": now.isoformat(), "b": _digest(browser)})

        self.db.write(add)

    def take(self, state: str, browser: str) -> tuple[str, str, str] | None:
        """The sign-in ``state`` started, once, and only in the browser that started it."""
        # One statement: two API hosts cannot both take the same state.
        row = self.db.write(lambda db: db.one("DELETE FROM oidc_pending WHERE state = :s RETURNING verifier, nonce, "
                                              "next, created_at, browser", {"s": state}))
        if row is None or datetime.now(UTC) - datetime.fromisoformat(row[3]) > PENDING_TTL:
            return None
        if not browser or not secrets.compare_digest(row[4] or "", _digest(browser)):
            return None
        return row[0], row[1], row[2]


class OidcLogin:
    def __init__(self, *, issuer: str, client_id: str, client_secret: str | None, redirect_url: str, scopes: str,
                 id_tokens: JwtVerifier, database: Database) -> None:
        self.issuer, self.client_id, self.client_secret = issuer, client_id, client_secret
        self.redirect_url, self.scopes = redirect_url, scopes
        self.id_tokens = id_tokens
        self._pending = _Pending(database)

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(client_id=self.client_id, client_secret=self.client_secret, scope=self.scopes,
                                 redirect_uri=self.redirect_url, code_challenge_method="S256",
                                 token_endpoint_auth_method="client_secret_post" if self.client_secret else "none",
                                 timeout=10)

    def start(self, next_url: str, browser: str) -> str:
        """The identity provider's authorization URL for a new sign-in by the browser holding ``browser``
        (a random value in its cookie: a callback link replayed in another browser is refused)."""
        verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        uri, state = self._client().create_authorization_url(
            discover(self.issuer)["authorization_endpoint"], code_verifier=verifier, nonce=nonce,
            state=secrets.token_urlsafe(24))
        assert create_s256_code_challenge(verifier) in uri
        self._pending.add(state, verifier, nonce, next_url, browser)
        return uri

    async def finish(self, *, code: str, state: str, browser: str) -> tuple[Identity, str, datetime]:
        """(the approver, where to go next, when the ID token expires); AuthError naming the problem otherwise."""
        pending = self._pending.take(state, browser)
        if pending is None:
            raise AuthError("this sign-in is unknown, used, older than 10 minutes or was started in another "
                            "browser (state); start again")
        verifier, nonce, next_url = pending
        async with self._client() as client:
            try:
                token = await client.fetch_token(discover(self.issuer)["token_endpoint"], code=code,
                                                 code_verifier=verifier, grant_type="authorization_code")
            except Exception as err:  # noqa: BLE001 - Authlib's OAuthError, or the network
                raise AuthError(f"the identity provider refused the sign-in code ({err}); start again") from None
        id_token = token.get("id_token")
        if not id_token:
            raise AuthError("the identity provider returned no ID token; ask for the openid scope")
        identity = self.id_tokens.verify(id_token)
        claims = self.id_tokens.claims(id_token)
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise AuthError("the ID token's nonce does not match this sign-in (replayed); start again")
        if not isinstance(claims.get("exp"), int | float):
            raise AuthError("the ID token has no expiry (exp); the identity provider must set one")
        return identity, next_url, datetime.fromtimestamp(claims["exp"], UTC)
