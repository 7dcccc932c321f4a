"""A small OpenID Connect provider the tests own, speaking the real protocol to careloom's real client code.

Discovery (``/.well-known/openid-configuration``), the authorization endpoint (a sign-in form, then a redirect
with ``code`` and ``state``), the token endpoint (authorization code with PKCE S256, checked), and a JWKS
endpoint with key rotation (:meth:`OidcProvider.rotate`). ID tokens are RS256 JWTs with ``iss``, ``aud``,
``sub``, ``name``, ``roles``, ``nonce``, ``iat`` and ``exp``. No packaged OIDC provider installs here without
a network service of its own; this one runs in a thread on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["OidcProvider", "running_provider"]


@dataclass
class _Key:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}


@dataclass
class OidcProvider:
    client_id: str = "careloom-inbox"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: list[_Key] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    jwks_requests: int = 0

    def __post_init__(self) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.rotate()

    # --- keys and tokens ------------------------------------------------------------
    def rotate(self) -> str:
        """A new signing key, published first in the JWKS; the previous one stays published. Its kid."""
        key = _Key(kid=f"k{len(self.keys) + 1}-{secrets.token_hex(3)}",
                   private=rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.keys.insert(0, key)
        return key.kid

    def token(self, user: str, *, nonce: str | None = None, audience: str | None = None, issuer: str | None = None,
              lifetime: int = 300, issued_at: float | None = None, kid: str | None = None,
              **claims: Any) -> str:  # noqa: ANN401
        key = next(k for k in self.keys if k.kid == kid) if kid else self.keys[0]
        now = int(issued_at if issued_at is not None else time.time())
        body = {"iss": issuer or self.issuer, "aud": audience or self.client_id, "sub": user, "iat": now,
                "exp": now + lifetime, **self.users.get(user, {}), **claims}
        if nonce is not None:
            body["nonce"] = nonce
        return jwt.encode(body, key.private, algorithm="RS256", headers={"kid": key.kid})

    # --- HTTP -----------------------------------------------------------------------
    def _discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile"], "token_endpoint_auth_methods_supported": ["none"]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:  # noqa: ANN401
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, provider._discovery())
                elif url.path == "/jwks":
                    provider.jwks_requests += 1
                    self._json(200, {"keys": [k.jwk() for k in provider.keys]})
                elif url.path == "/authorize":
                    self._authorize_form(query)
                else:
                    self._json(404, {"error": "not_found"})

            def _authorize_form(self, query: dict[str, str]) -> None:
                problems = [name for name in ("client_id", "redirect_uri", "state", "code_challenge", "nonce")
                            if not query.get(name)]
                if query.get("client_id") != provider.client_id or query.get("code_challenge_method") != "S256":
                    problems.append("client_id or code_challenge_method")
                if query.get("response_type") != "code" or "openid" not in query.get("scope", "").split():
                    problems.append("response_type/scope")
                if problems:
                    self._json(400, {"error": "invalid_request", "error_description": f"bad {problems}"})
                    return
                hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                                 for k, v in query.items())
                options = "".join(f'<option value="{html.escape(u)}">{html.escape(u)}</option>' for u in provider.users)
                page = (f'<!doctype html><title>Test IdP</title><form method="post" action="/authorize">{hidden}'
                        f'<select id="user" name="user">{options}</select>'
                        '<button id="sign-in" type="submit">Sign in</button></form>').encode()
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def _form(self) -> dict[str, str]:
                raw = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                return {k: v[0] for k, v in parse_qs(raw).items()}

            def do_POST(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                form = self._form()
                if url.path == "/authorize":
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = {**form, "issued": time.time()}
                    target = f"{form['redirect_uri']}?{urlencode({'code': code, 'state': form['state']})}"
                    self.send_response(302)
                    self.send_header("location", target)
                    self.send_header("content-length", "0")
                    self.end_headers()
                elif url.path == "/token":
                    provider.token_requests.append(form)
                    self._token(form)
                else:
                    self._json(404, {"error": "not_found"})

            def _token(self, form: dict[str, str]) -> None:
                grant = provider.codes.pop(form.get("code", ""), None)  # one use only
                if grant is None or form.get("grant_type") != "authorization_code":
                    self._json(400, {"error": "invalid_grant", "error_description": "unknown or used code"})
                    return
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if challenge != grant["code_challenge"]:
                    self._json(400, {"error": "invalid_grant", "error_description": "PKCE verifier does not match"})
                    return
                if form.get("redirect_uri") != grant["redirect_uri"] or form.get("client_id") != provider.client_id:
                    self._json(400, {"error": "invalid_grant", "error_description": "redirect_uri or client_id"})
                    return
                self._json(200, {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer",
                                 "expires_in": 300,
                                 "id_token": provider.token(grant["user"], nonce=grant["nonce"])})

        return Handler

    def start(self) -> None:
        threading.Thread(target=self._httpd.serve_forever, name="oidc-provider", daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def running_provider(**users: dict[str, Any]) -> Iterator[OidcProvider]:
    provider = OidcProvider(users=dict(users))
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
