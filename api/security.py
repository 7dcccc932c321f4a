"""Browser-facing protections of the API and inbox: security headers, a body size limit and CSRF checks.

* Every response carries a Content-Security-Policy with no inline script (nothing but same-origin styles and
  data: images; frames refused), ``Referrer-Policy: no-referrer``, ``X-Content-Type-Options: nosniff``,
  ``Cache-Control: no-store`` (pages show member context; not on /codec, see below) and, in production,
  HSTS.
* An exception no handler caught becomes a generic JSON 500 with the same headers, answered here (Starlette's
  own 500 is sent outside every middleware, without them); the log line names the exception's type and the
  route, never its message or a traceback (either may quote member data).
* A request body over ``max_body_bytes`` is refused with 413 before any handler reads it.
* A request authenticated by the session cookie that changes something (POST...) must carry the session's
  CSRF token: the ``csrf_token`` form field (inbox forms) or the ``X-CSRF-Token`` header (scripts).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

__all__ = ["BodyLimitMiddleware", "CodecOnlyCORS", "SecurityHeadersMiddleware", "csrf_matches", "security_headers"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
CODEC_SKIP = b"cache-control"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
INTERNAL_ERROR = {"detail": "internal error: the request could not be completed; nothing is shown about why. "
                            "Retry; if it persists, an operator can find it in the API log by time and path",
                  "code": "internal"}

log = structlog.get_logger(__name__)


def security_headers(*, production: bool) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-security-policy", CSP.encode()), (b"referrer-policy", b"no-referrer"),
               (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"cache-control", b"no-store")]
    if production:
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return headers


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, production: bool) -> None:
        self.app = app
        self.headers = security_headers(production=production)
        # /codec answers the Temporal Web UI's scripts, not a page; with no-store on its 401s the UI kept
        # re-fetching the history page and never settled (seen in tests/api/test_ui_codec_browser.py).
        self.codec_headers = [h for h in self.headers if h[0] != CODEC_SKIP]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = self.codec_headers if scope.get("path", "").startswith("/codec") else self.headers
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in headers if k not in names)]
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception as err:
            route = scope.get("route")
            log.error("api.unhandled_error", error_type=type(err).__name__, method=scope.get("method"),
                      route=getattr(route, "path", None))  # the template (/api/runs/{workflow_id}), not the ids
            if started:
                return  # the status line is out: the server ends the response short (no traceback in its log)
            body = json.dumps(INTERNAL_ERROR).encode()
            await with_headers({"type": "http.response.start", "status": 500,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for a body over ``limit`` bytes, by its Content-Length or, without one, as it streams in."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body is over {self.limit} bytes; send less (one decision or one "
                                     "request Bundle per call)", "code": "too_large"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *security_headers(production=False)]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        too_large = False

        async def counted() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_large = True  # the handler sees a client that went away; the 413 is ours
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not too_large:
                await send(message)

        try:
            await self.app(scope, counted, unless_refused)
        except Exception:
            if not too_large:
                raise
        if too_large:
            await self._refuse(send)


class CodecOnlyCORS:
    """CORS (with credentials) for ``/codec`` only: the Temporal Web UI's origin may call the codec, and no
    other route answers a cross-origin script, so a script on that origin cannot read inbox pages."""

    def __init__(self, app: ASGIApp, *, allow_origins: list[str]) -> None:
        from starlette.middleware.cors import CORSMiddleware

        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=allow_origins, allow_credentials=True, allow_methods=["POST"],
                                   allow_headers=["*"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/codec"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
