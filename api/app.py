"""The careloom HTTP API and web inbox (FastAPI), served by ``careloom up`` and ``careloom api``.

Approvers authenticate with a bearer token (header) or the inbox's session
cookie; the verifier is the users file (hashed API tokens) or an identity
provider's JWTs. Refusals map to status codes: 401 unauthenticated, 403 wrong
role or self-approval, 404 unknown, 409 stale digest or already decided,
422 invalid input.
"""


from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from pydantic import BaseModel, Field, ValidationError
from temporalio.client import Client

from agents.actions import ActionArguments
from agents.approvals import ApprovalDecision, DecisionResult, PendingApproval
from api.auth import make_verifier
from api.identity import AuthError, Identity, TokenVerifier, bearer_token
from api.preview import preview_resources
from guardrails.policy import Role
from runtime.codec import PayloadKeyError
from runtime.settings import Settings
from runtime.temporal_client import codec_for, connect
from workflows.outreach import MemberOutreachWorkflow, OutreachStatus
from workflows.outreach_client import (
    BulkItem,
    BulkItemResult,
    DecisionRejected,
    InboxFilter,
    InboxPage,
    decide,
    decide_bulk,
    get_approval,
    list_inbox,
)

__all__ = ["SESSION_COOKIE", "create_app"]

SESSION_COOKIE = "careloom_session"
STATUS_FOR = {"not_found": 404, "conflict": 409, "forbidden": 403, "invalid": 422}


class DecisionRequest(BaseModel):
    """A decision as the API takes it: the approver and role come from the token, never the body."""

    decision: Literal["approve", "reject", "edit", "reassign"]
    digest: str = Field(description="Digest of the action you reviewed.")
    reason: str | None = Field(default=None, max_length=500)
    arguments: ActionArguments | None = None
    queue: str | None = None


class BulkRequest(BaseModel):
    decision: Literal["approve", "reject"]
    tool: str = Field(description="Every item must be this tool.")
    reason: str | None = None
    items: list[BulkItem] = Field(min_length=1, max_length=500)


class BulkResponse(BaseModel):
    decided: int
    failed: int
    results: list[BulkItemResult]


class ApprovalView(BaseModel):
    item: PendingApproval
    preview: list[dict[str, Any]]


def create_app(settings: Settings, *, client: Client | None = None, verifier: TokenVerifier | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = client or await connect(settings)
        yield

    app = FastAPI(title="careloom", version="0.1.0", lifespan=lifespan,
                  description="Supervisor approvals for careloom outreach runs.")
    app.state.settings = settings
    app.state.verifier = verifier or make_verifier(settings)
    payload_codec = codec_for(settings)  # built once: the Web UI calls /codec for every page it shows
    # The embedded Temporal Web UI (another port, same site) calls /codec with the inbox session cookie.
    app.add_middleware(CORSMiddleware, allow_origins=[f"http://127.0.0.1:{settings.embedded_ui_port}",
                                                      f"http://localhost:{settings.embedded_ui_port}"],
                       allow_credentials=True, allow_methods=["POST"], allow_headers=["*"])

    @app.exception_handler(DecisionRejected)
    async def _refused(request: Request, exc: DecisionRejected) -> JSONResponse:
        return JSONResponse(status_code=STATUS_FOR.get(exc.code, 422), content={"detail": str(exc), "code": exc.code})

    def temporal(request: Request) -> Client:
        return request.app.state.client

    def identity(request: Request) -> Identity:
        header = request.headers.get("authorization")
        token = request.cookies.get(SESSION_COOKIE) if header is None else None
        try:
            return request.app.state.verifier.verify(token or bearer_token(header))
        except AuthError as err:
            raise HTTPException(status_code=401, detail=str(err), headers={"WWW-Authenticate": "Bearer"}) from None

    Who = Annotated[Identity, Depends(identity)]
    Temporal = Annotated[Client, Depends(temporal)]

    @app.get("/api/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/me")
    async def me(who: Who) -> Identity:
        return who

    @app.get("/api/approvals")
    async def list_approvals(
        who: Who, client_: Temporal,
        queue: str | None = None, role: Role | None = None, priority: Literal["routine", "urgent"] | None = None,
        due_before: datetime | None = None, page_size: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(pattern=r"^\d+$")] = None,
    ) -> InboxPage:
        """Pending approvals across all runs, earliest SLA deadline first, paginated."""
        filters = InboxFilter(queue=queue, role=role, priority=priority, due_before=due_before)
        return await list_inbox(client_, filters, page_size=page_size, cursor=cursor)

    @app.get("/api/approvals/{workflow_id}/{approval_id}")
    async def show_approval(workflow_id: str, approval_id: str, who: Who, client_: Temporal) -> ApprovalView:
        """One pending approval and a preview of the FHIR resource(s) it would write."""
        item = await get_approval(client_, workflow_id, approval_id)
        return ApprovalView(item=item, preview=preview_resources(item))

    @app.post("/api/approvals/{workflow_id}/{approval_id}/decision")
    async def decide_approval(workflow_id: str, approval_id: str, body: DecisionRequest, who: Who,
                              client_: Temporal) -> DecisionResult:
        """Approve, reject (reason required), edit (new arguments, re-guarded) or reassign one item."""
        return await decide(client_, workflow_id, to_decision(approval_id, body, who))

    @app.post("/api/approvals/bulk")
    async def bulk(body: BulkRequest, who: Who, client_: Temporal) -> BulkResponse:
        """Decide a homogeneous selection; every item is validated and reported on its own."""
        results = await decide_bulk(client_, body.items, decision=body.decision, tool=body.tool,
                                    approver=who.user_id, role=who.role, reason=body.reason)
        ok = sum(r.ok for r in results)
        return BulkResponse(decided=ok, failed=len(results) - ok, results=results)

    @app.post("/codec/decode", include_in_schema=False)
    async def codec_decode(request: Request, who: Who) -> JSONResponse:
        """Temporal Web UI codec endpoint (`--ui-codec-endpoint`): decrypts payloads for signed-in users only."""
        return await _codec(request, encode=False)

    @app.post("/codec/encode", include_in_schema=False)
    async def codec_encode(request: Request, who: Who) -> JSONResponse:
        return await _codec(request, encode=True)

    async def _codec(request: Request, *, encode: bool) -> JSONResponse:
        payloads = Payloads()
        try:
            json_format.Parse(await request.body(), payloads)
        except json_format.ParseError as err:
            raise HTTPException(status_code=422, detail=f"body must be {{'payloads': [...]}}: {err}") from None
        if payload_codec is None:
            return JSONResponse(json_format.MessageToDict(payloads))
        try:
            out = await (payload_codec.encode(payloads.payloads) if encode
                         else payload_codec.decode(payloads.payloads))
        except PayloadKeyError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None
        return JSONResponse(json_format.MessageToDict(Payloads(payloads=out)))

    @app.get("/api/runs/{workflow_id}")
    async def run_status(workflow_id: str, who: Who, client_: Temporal) -> OutreachStatus:
        handle = client_.get_workflow_handle_for(MemberOutreachWorkflow.run, workflow_id)
        try:
            return await handle.query(MemberOutreachWorkflow.status)
        except Exception as err:  # noqa: BLE001 - unknown or unreachable run
            raise HTTPException(status_code=404, detail=f"no run {workflow_id!r}: {err}") from None

    from api.web import mount_web  # noqa: PLC0415 - the pages reuse the dependencies above

    mount_web(app, identity=identity, temporal=temporal)
    return app


def to_decision(approval_id: str, body: DecisionRequest, who: Identity) -> ApprovalDecision:
    try:
        return ApprovalDecision(approval_id=approval_id, digest=body.digest, decision=body.decision,
                                approver=who.user_id, role=who.role, reason=body.reason,
                                arguments=body.arguments, queue=body.queue)
    except ValidationError as err:
        first = err.errors()[0]
        raise DecisionRejected("invalid", first["msg"].removeprefix("Value error, ")) from None
