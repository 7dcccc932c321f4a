"""The dependencies every router shares, as FastAPI ``Depends`` callables.

:func:`bind_state` builds, once per app, what they hand out (settings, token
verifier, payload codec, approval queue names); the lifespan in
:mod:`api.app` adds the Temporal client. :func:`current_identity` is who is
calling: a bearer token in ``Authorization`` or, without that header, the
inbox's session cookie.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from temporalio.client import Client

from api.auth import make_verifier
from api.identity import AuthError, Identity, TokenVerifier
from api.security import UNSAFE_METHODS, csrf_matches
from api.sessions import Session, SessionStore
from api.users import UserDirectory
from guardrails.configured import outreach_policy
from guardrails.configured import prior_auth_policy
from guardrails.configured import signer
from guardrails.signing import DecisionSigner
from runtime.codec import PayloadEncryptionCodec
from runtime.data_converter import codec_for
from runtime.settings import Settings
from store.access_log import AccessLog
from store.approval_items import ApprovalItems
from store.connect import configured_database
from store.database import Database
from store.sql_records import SqlCareRecordStore
from tools.criteria import CriteriaSet
from tools.criteria import criteria_for

if TYPE_CHECKING:
    from api.oidc import OidcLogin

__all__ = [
    "SESSION_COOKIE",
    "AppSettings",
    "Approvals",
    "ApprovalQueues",
    "Codec",
    "Criteria",
    "RecordsStore",
    "CurrentIdentity",
    "Verifier",
    "TemporalClient",
    "bearer_token",
    "bind_state",
    "current_identity",
    "current_session",
    "get_client",
    "get_codec",
    "get_criteria",
    "get_store",
    "get_approval_items",
    "get_queues",
    "get_settings",
    "get_verifier",
]

SESSION_COOKIE = "careloom_session"

_BEARER_FIX = "send Authorization: Bearer <token>"


def bind_state(app: FastAPI, settings: Settings, *, verifier: TokenVerifier | None) -> None:
    """Build what the dependencies hand out, once: a bad setting fails here, not on a request."""
    app.state.settings = settings
    app.state.verifier = verifier or make_verifier(settings)
    app.state.codec = codec_for(settings)  # built once: the Web UI calls /codec for every page it shows
    # Queue names for the reassign form: computed once, not per page (the policy builds a holiday calendar).
    app.state.queues = sorted({*outreach_policy(settings).approvals.queues,
                               *prior_auth_policy(settings).approvals.queues})
    # Prior-authorization intake: the records store the request is written to, and the criteria it is
    # checked against (a bad criteria file fails here, at start).
    app.state.store = SqlCareRecordStore(configured_database(settings))
    app.state.criteria = criteria_for(settings)
    # Decisions are signed here, after the approver is authenticated; runs verify them (guardrails/signing.py).
    app.state.signer = signer(settings)
    app.state.approval_items = ApprovalItems(app.state.store.db)  # the inbox's approvals projection
    app.state.access_log = AccessLog(app.state.store.db)
    app.state.oidc = _oidc_login(settings, app.state.store.db)
    app.state.sessions = SessionStore(app.state.store.db,
                                      idle=timedelta(minutes=settings.session_idle_minutes),
                                      absolute=timedelta(hours=settings.session_absolute_hours))


def _oidc_login(settings: Settings, database: Database) -> OidcLogin | None:
    """Inbox sign-in through the identity provider, when CARELOOM_OIDC_ISSUER is set."""
    if not settings.oidc_issuer or not settings.oidc_client_id:
        return None
    from api.auth import jwt_verifier
    from api.oidc import OidcLogin

    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
    return OidcLogin(issuer=settings.oidc_issuer, client_id=settings.oidc_client_id, client_secret=secret,
                     redirect_url=settings.oidc_redirect_url
                     or f"http://{settings.api_host}:{settings.api_port}/auth/callback",
                     scopes=settings.oidc_scopes, id_tokens=jwt_verifier(settings, audience=settings.oidc_client_id),
                     database=database)


def get_signer(request: Request) -> DecisionSigner:
    """The decision signer (CARELOOM_SIGNING_KEYS, or the development key file)."""
    return request.app.state.signer


def get_settings(request: Request) -> Settings:
    """The validated settings the app was built with."""
    return request.app.state.settings


def get_client(request: Request) -> Client:
    """The Temporal client, connected in the app's lifespan."""
    return request.app.state.client


def get_verifier(request: Request) -> TokenVerifier:
    """The users file or the JWT verifier, as the settings choose (:func:`api.auth.make_verifier`)."""
    return request.app.state.verifier


def get_codec(request: Request) -> PayloadEncryptionCodec | None:
    """The payload codec, or ``None`` when no payload keys are configured."""
    return request.app.state.codec


def get_queues(request: Request) -> list[str]:
    """The approval queues of the guardrail policy, by name."""
    return request.app.state.queues


def get_store(request: Request) -> SqlCareRecordStore:
    """The care records store (prior-authorization requests are written there)."""
    return request.app.state.store


def get_approval_items(request: Request) -> ApprovalItems:
    """The approvals projection the inbox lists from."""
    return request.app.state.approval_items


def get_criteria(request: Request) -> CriteriaSet:
    """The medical-policy criteria prior-authorization requests are checked against."""
    return request.app.state.criteria


def bearer_token(authorization_header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive, RFC 6750).

    Raises :class:`AuthError` for a missing or empty header, another scheme, or a
    malformed token. Messages never repeat the header: it may hold a credential.
    """
    header = (authorization_header or "").strip()
    if not header:
        raise AuthError(f"missing bearer token: {_BEARER_FIX}")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError(f"authorization scheme is not Bearer: {_BEARER_FIX}")
    token = token.strip()
    if not token:
        raise AuthError(f"empty bearer token: {_BEARER_FIX}")
    if not re.fullmatch(r"[A-Za-z0-9\-._~+/]+=*", token):
        raise AuthError(f"malformed bearer token (spaces or characters not allowed in a token): {_BEARER_FIX}")
    return token


def current_session(request: Request) -> Session | None:
    """The live inbox session of the cookie, if any (cached on the request)."""
    if not hasattr(request.state, "session"):
        cookie = request.cookies.get(SESSION_COOKIE)
        session = get_sessions(request).get(cookie) if cookie else None
        if session is not None and not _still_approver(request, session.identity):
            get_sessions(request).delete(cookie)  # removed, or given another role, since signing in
            session = None
        request.state.session = session
    return request.state.session


def _still_approver(request: Request, who: Identity) -> bool:
    """With the embedded users file, a session lasts only while its user is there with the same role."""
    verifier = get_verifier(request)
    if not isinstance(verifier, UserDirectory):
        return True  # an identity provider's users: the session's timeouts bound it
    current = verifier.get(who.user_id)
    return current is not None and current.role == who.role


def current_identity(request: Request) -> Identity:
    """The caller, from the bearer header or else the inbox session; 401 if neither.

    A session-authenticated request that changes something must carry the session's CSRF token in the
    ``X-CSRF-Token`` header (inbox forms send it as a form field, checked by the page routes): 403 otherwise.
    """
    header = request.headers.get("authorization")
    if header is None:
        session = current_session(request)
        if session is None:
            raise HTTPException(status_code=401, headers={"WWW-Authenticate": "Bearer"}, detail=(
                f"not signed in: {_BEARER_FIX}, or sign in at /login (sessions end after inactivity)"))
        # Inbox forms carry the token as a form field (checked by the page routes); /codec only decodes.
        if (request.method in UNSAFE_METHODS and not request.url.path.startswith(("/inbox", "/logout", "/codec"))
                and not csrf_matches(session.csrf_token, request.headers.get("x-csrf-token"))):
            raise HTTPException(status_code=403, detail="missing or wrong X-CSRF-Token for this session: send "
                                                        "the token of your inbox session with the request")
        return session.identity
    try:
        return get_verifier(request).verify(bearer_token(header))
    except AuthError as err:
        raise HTTPException(status_code=401, detail=str(err), headers={"WWW-Authenticate": "Bearer"}) from None


def get_sessions(request: Request) -> SessionStore:
    return request.app.state.sessions


CurrentIdentity = Annotated[Identity, Depends(current_identity)]
TemporalClient = Annotated[Client, Depends(get_client)]
Verifier = Annotated[TokenVerifier, Depends(get_verifier)]
Codec = Annotated[PayloadEncryptionCodec | None, Depends(get_codec)]
ApprovalQueues = Annotated[list[str], Depends(get_queues)]
RecordsStore = Annotated[SqlCareRecordStore, Depends(get_store)]
Approvals = Annotated[ApprovalItems, Depends(get_approval_items)]
Criteria = Annotated[CriteriaSet, Depends(get_criteria)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Signer = Annotated[DecisionSigner, Depends(get_signer)]
