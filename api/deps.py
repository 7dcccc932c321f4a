"""The dependencies every router shares, as FastAPI ``Depends`` callables.

:func:`bind_state` builds, once per app, what they hand out (settings, token
verifier, payload codec, approval queue names); the lifespan in
:mod:`api.app` adds the Temporal client. :func:`current_identity` is who is
calling: a bearer token in ``Authorization`` or, without that header, the
inbox's session cookie.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from temporalio.client import Client

from api.auth import make_verifier
from api.identity import AuthError, Identity, TokenVerifier
from runtime.codec import PayloadEncryptionCodec
from runtime.settings import Settings
from runtime.signing import DecisionSigner
from runtime.temporal_client import codec_for
from store.records import SqliteCareRecordStore
from tools.criteria import CriteriaSet

__all__ = [
    "SESSION_COOKIE",
    "AppSettings",
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
    "get_client",
    "get_codec",
    "get_criteria",
    "get_store",
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
    app.state.queues = sorted({*settings.guardrail_policy().approvals.queues,
                               *settings.prior_auth_policy().approvals.queues})
    # Prior-authorization intake: the records store the request is written to, and the criteria it is
    # checked against (a bad criteria file fails here, at start).
    app.state.store = SqliteCareRecordStore(settings.records_path)
    app.state.criteria = settings.criteria()
    # Decisions are signed here, after the approver is authenticated; runs verify them (runtime/signing.py).
    app.state.signer = settings.signer()


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


def get_store(request: Request) -> SqliteCareRecordStore:
    """The care records store (prior-authorization requests are written there)."""
    return request.app.state.store


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


def current_identity(request: Request) -> Identity:
    """The caller, from the bearer header or else the session cookie; 401 if neither verifies."""
    header = request.headers.get("authorization")
    token = request.cookies.get(SESSION_COOKIE) if header is None else None
    try:
        return get_verifier(request).verify(token or bearer_token(header))
    except AuthError as err:
        raise HTTPException(status_code=401, detail=str(err), headers={"WWW-Authenticate": "Bearer"}) from None


CurrentIdentity = Annotated[Identity, Depends(current_identity)]
TemporalClient = Annotated[Client, Depends(get_client)]
Verifier = Annotated[TokenVerifier, Depends(get_verifier)]
Codec = Annotated[PayloadEncryptionCodec | None, Depends(get_codec)]
ApprovalQueues = Annotated[list[str], Depends(get_queues)]
RecordsStore = Annotated[SqliteCareRecordStore, Depends(get_store)]
Criteria = Annotated[CriteriaSet, Depends(get_criteria)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Signer = Annotated[DecisionSigner, Depends(get_signer)]
