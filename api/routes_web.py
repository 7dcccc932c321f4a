"""The web inbox: server-rendered pages, no build step, nothing fetched from the internet."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from api.decisions import STATUS_FOR, DecisionRequest, public_detail, to_decision
from api.deps import (
    SESSION_COOKIE,
    Approvals,
    TemporalClient,
    Verifier,
    current_identity,
    current_session,
    get_client,
    get_queues,
)
from api.filters import visibility_value
from api.identity import AuthError, Identity
from api.preview import preview_resources
from api.security import csrf_matches
from api.visibility import may_decide, record_access, visible_approval
from guardrails.actions import ACTION_ARGUMENTS
from runtime.errors import ConfigurationError, DecisionRefused
from workflows.inbox import InboxFilter, decide, list_inbox

__all__ = ["router"]

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

router = APIRouter(include_in_schema=False)


def _due(value: datetime) -> str:
    delta = value - datetime.now(UTC)
    minutes = int(delta.total_seconds() // 60)
    when = value.strftime("%Y-%m-%d %H:%M UTC")
    if minutes < 0:
        return f"{when} (overdue {-minutes} min)"
    return f"{when} (in {minutes // 60} h {minutes % 60} min)"


TEMPLATES.env.filters["due"] = _due
TEMPLATES.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, default=str)


def _who_or_login(request: Request) -> Identity | RedirectResponse:
    # Called in each handler, not a dependency: a page sends an unknown caller to the login form
    # (the JSON API answers 401), after FastAPI has validated the form's fields.
    try:
        return current_identity(request)
    except HTTPException:
        return RedirectResponse(f"/login?next={quote(str(request.url.path))}", status_code=303)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/inbox", status_code=303)


LOGIN_CSRF_COOKIE = "careloom_login_csrf"
OIDC_BROWSER_COOKIE = "careloom_oidc_browser"
FORM_EXPIRED = ("this form was not sent by your inbox session (missing or stale CSRF token); reload the page "
                "and try again")


def _render(request: Request, template: str, context: dict, *, status_code: int = 200) -> Response:
    """A page with the session's CSRF token for its forms."""
    session = current_session(request)
    token = session.csrf_token if session else context.pop("csrf_token", "")
    return TEMPLATES.TemplateResponse(request, template, {**context, "csrf_token": token}, status_code=status_code)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.app.state.settings.environment == "production"


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/inbox") -> Response:
    # Login CSRF: a double-submit token, since there is no session yet.
    token = secrets.token_urlsafe(24)
    response = _render(request, "login.html", {"next": _safe_next(next), "error": None, "csrf_token": token,
                                               "oidc": request.app.state.oidc is not None})
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request),
                        max_age=1800, path="/login")
    return response


@router.post("/login")
async def login(request: Request, verifier: Verifier, token: str = Form(...), next: str = Form("/inbox"),
                csrf_token: str = Form("")) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not csrf_matches(expected, csrf_token):
        return _render(request, "login.html", {"next": next, "error": FORM_EXPIRED, "csrf_token": expected or ""},
                       status_code=403)
    try:
        who = verifier.verify(token.strip())
    except AuthError as err:
        return _render(request, "login.html", {"next": next, "error": str(err), "csrf_token": expected},
                       status_code=401)
    response = _open_session(request, who, RedirectResponse(_safe_next(next), status_code=303))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_\-.~?=&%]*")


def _safe_next(value: str | None) -> str:
    """A path on this site only: no scheme, host, backslash or control character (open redirects)."""
    return value if value and _LOCAL_PATH.fullmatch(value) else "/inbox"


def _open_session(request: Request, who: Identity, response: Response, *,
                  expires_at: datetime | None = None) -> Response:
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:  # signing in again ends the session this browser had
        request.app.state.sessions.delete(previous)
    session_id, _ = request.app.state.sessions.create(who, expires_at=expires_at)
    settings = request.app.state.settings
    max_age = settings.session_absolute_hours * 3600
    if expires_at is not None:
        max_age = max(0, min(max_age, int((expires_at - datetime.now(UTC)).total_seconds())))
    # The cookie holds a random session id; the identity and clocks stay on the server (api/sessions.py).
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict", secure=_secure(request),
                        max_age=max_age)
    return response


@router.get("/auth/login")
async def oidc_start(request: Request, next: str = "/inbox") -> Response:
    """Sign in at the identity provider (OpenID Connect, authorization code with PKCE)."""
    oidc = request.app.state.oidc
    if oidc is None:
        raise HTTPException(status_code=404, detail="sign-in through an identity provider is not configured "
                                                    "(CARELOOM_OIDC_ISSUER)")
    browser = secrets.token_urlsafe(24)
    try:
        target = await asyncio.to_thread(oidc.start, _safe_next(next), browser)  # discovery may fetch: a thread
    except ConfigurationError as err:
        raise HTTPException(status_code=503, detail=f"the identity provider is unavailable: {err}") from None
    response = RedirectResponse(target, status_code=302)
    # Lax: the IdP's redirect back is a cross-site top-level navigation, which a Strict cookie would not join.
    response.set_cookie(OIDC_BROWSER_COOKIE, browser, httponly=True, samesite="lax", secure=_secure(request),
                        max_age=600, path="/auth")
    return response


@router.get("/auth/callback")
async def oidc_callback(request: Request, code: str = "", state: str = "", error: str = "",
                        error_description: str = "") -> Response:
    oidc = request.app.state.oidc
    if oidc is None:
        raise HTTPException(status_code=404, detail="sign-in through an identity provider is not configured")
    problem = None
    if error:
        problem = f"the identity provider did not sign you in ({error}: {error_description or 'no detail'})"
    elif not code or not state:
        problem = "the identity provider's answer has no code or state; start the sign-in again"
    else:
        try:
            who, next_url, expires_at = await oidc.finish(code=code, state=state,
                                                          browser=request.cookies.get(OIDC_BROWSER_COOKIE, ""))
        except AuthError as err:
            problem = str(err)
    if problem is not None:
        return _render(request, "login.html", {"next": "/inbox", "error": problem, "csrf_token": "",
                                               "oidc": True}, status_code=401)
    # A page of our own moves on to the inbox: the SameSite=Strict cookie set here then travels with a
    # same-site navigation (a redirect straight from the IdP's site would leave it behind).
    page = _render(request, "continue.html", {"next": _safe_next(next_url), "who": None})
    page.delete_cookie(OIDC_BROWSER_COOKIE, path="/auth")
    # The session ends with the ID token: the role it carries is re-read from the IdP at the next sign-in.
    return _open_session(request, who, page, expires_at=expires_at)


@router.post("/logout")
async def logout(request: Request, csrf_token: str = Form("")) -> Response:
    session = current_session(request)
    if session is not None and not csrf_matches(session.csrf_token, csrf_token):
        return _render(request, "message.html", {"who": session.identity, "message": FORM_EXPIRED},
                       status_code=403)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        request.app.state.sessions.delete(cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(request: Request, approvals: Approvals, queue: str | None = None, role: str | None = None,
                priority: str | None = None, cursor: str | None = None, flash: str | None = None) -> Response:
    who = _who_or_login(request)
    if isinstance(who, Response):
        return who
    try:
        filters = InboxFilter(queue=visibility_value("queue", queue or None), role=role or None,
                              priority=priority or None, max_role=who.role)
    except DecisionRefused as err:
        return _render(request, "message.html", {"who": who, "message": str(err)}, status_code=422)
    except ValidationError:
        filters = InboxFilter(max_role=who.role)
    try:
        page = await list_inbox(approvals, filters, page_size=50, cursor=cursor or None)
    except ValueError:  # a cursor we did not make (edited by hand, or from before an upgrade): the first page
        page = await list_inbox(approvals, filters, page_size=50)
    record_access(request, who, "inbox.list", f"{len(page.items)} items")
    return _render(request, "inbox.html", {"who": who, "page": page, "filters": filters, "flash": flash})


@router.get("/inbox/{workflow_id}/{approval_id}", response_class=HTMLResponse)
async def item_page(request: Request, workflow_id: str, approval_id: str) -> Response:
    who = _who_or_login(request)
    if isinstance(who, Response):
        return who
    return await _render_item(request, who, workflow_id, approval_id, error=None, status_code=200)


async def _render_item(request: Request, who: Identity, workflow_id: str, approval_id: str, *,
                       error: str | None, status_code: int, draft: str | None = None) -> Response:
    try:
        item = await visible_approval(request, get_client(request), who, workflow_id, approval_id, action="inbox.item")
    except DecisionRefused as err:
        return _render(request, "message.html", {"who": who, "message": public_detail(err)},
                       status_code=STATUS_FOR.get(err.code, 404))
    return _render(request, "item.html", {
        "who": who, "item": item, "preview": preview_resources(item), "error": error,
        "queues": get_queues(request), "arguments_json": draft or item.arguments.model_dump_json(indent=2),
    }, status_code=status_code)


@router.post("/inbox/{workflow_id}/{approval_id}")
async def decide_form(request: Request, workflow_id: str, approval_id: str, client: TemporalClient,
                      decision: str = Form(...), digest: str = Form(...), reason: str = Form(""),
                      arguments: str = Form(""), queue: str = Form(""), csrf_token: str = Form("")) -> Response:
    who = _who_or_login(request)
    if isinstance(who, Response):
        return who
    session = current_session(request)
    if session is not None and not csrf_matches(session.csrf_token, csrf_token):
        return _render(request, "message.html", {"who": who, "message": FORM_EXPIRED}, status_code=403)
    try:
        await may_decide(request, client, who, workflow_id, approval_id, action="inbox.decide")
        parsed = (ACTION_ARGUMENTS.validate_python(json.loads(arguments))
                  if decision == "edit" else None)
        body = DecisionRequest(decision=decision, digest=digest, reason=reason.strip() or None,
                               arguments=parsed, queue=queue or None if decision == "reassign" else None)
        result = await decide(client, workflow_id, to_decision(approval_id, body, who),
                              signer=request.app.state.signer)
    except json.JSONDecodeError as err:
        return await _render_item(request, who, workflow_id, approval_id, status_code=422, draft=arguments,
                                  error=f"the edited arguments are not valid JSON: {err.msg} (line {err.lineno})")
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return await _render_item(request, who, workflow_id, approval_id, status_code=422, draft=arguments,
                                  error=f"invalid {where}: {first['msg']}")
    except DecisionRefused as err:
        return await _render_item(request, who, workflow_id, approval_id, error=public_detail(err), draft=arguments,
                                  status_code=STATUS_FOR.get(err.code, 422))
    flash = f"{result.outcome}: {result.approval_id} ({workflow_id})"
    return RedirectResponse(f"/inbox?flash={quote(flash)}", status_code=303)
