"""The worker runs careloom's activities only for careloom's own runs on its own task queues.

Whoever can reach the Temporal frontend can run a workflow of their own (on a task queue they poll) that
schedules careloom's activities by name on careloom's task queue: careloom's worker would then read records and
write Tasks, messages or ClaimResponses for a run that no careloom code drives. Before any activity runs, this
interceptor asks Temporal who is asking — the calling run's workflow type and task queue, which the server
records and the caller cannot forge — and refuses (``RunNotTrusted``, not retried) unless it is one of careloom's
workflows on one of this worker's workflow task queues. One describe per run per worker process (cached).

Temporal authorization must still keep other identities from polling careloom's task queues (a poller there
would receive the real runs' tasks): docs/security.md.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

__all__ = ["RUN_NOT_TRUSTED", "RunOriginInterceptor"]

RUN_NOT_TRUSTED = "RunNotTrusted"
_DESCRIBE_TIMEOUT = timedelta(seconds=10)


class RunOriginInterceptor(Interceptor):
    """Refuses activity tasks whose calling run is not a careloom workflow on one of ``task_queues``."""

    def __init__(self, client: Client, *, task_queues: Iterable[str], workflow_types: Iterable[str],
                 cache_size: int = 50_000) -> None:
        self._client = client
        self._queues = frozenset(task_queues)
        self._types = frozenset(workflow_types)
        self._trusted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._cache_size = cache_size

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:  # noqa: A002
        return _CheckOrigin(next, self)

    async def check(self) -> None:
        """Return if the current activity's run is careloom's on this worker's queues; raise ApplicationError."""
        info = activity.info()
        if not info.workflow_id or not info.workflow_run_id:
            raise ApplicationError("careloom activities run only for careloom workflows, not standalone",
                                   type=RUN_NOT_TRUSTED, non_retryable=True)
        key = (info.workflow_id, info.workflow_run_id)
        if key in self._trusted:
            self._trusted.move_to_end(key)
            return
        try:
            described = await self._client.get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id).describe(
                rpc_timeout=_DESCRIBE_TIMEOUT)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ApplicationError(f"the run asking for {info.activity_type} is unknown to Temporal",
                                       type=RUN_NOT_TRUSTED, non_retryable=True) from None
            raise ApplicationError(f"cannot confirm the run asking for {info.activity_type} ({err.message}); "
                                   "retrying", type="RunOriginUnavailable") from None
        if described.task_queue not in self._queues or described.workflow_type not in self._types:
            activity.logger.warning("activity refused: the calling run is not a careloom run on this worker's queues",
                                    extra={"calling_type": described.workflow_type[:80]})
            raise ApplicationError(
                f"{info.activity_type} refused: the calling run ({described.workflow_type} on task queue "
                f"{described.task_queue}) is not a careloom workflow on this worker's task queues",
                type=RUN_NOT_TRUSTED, non_retryable=True)
        self._trusted[key] = None
        if len(self._trusted) > self._cache_size:
            self._trusted.popitem(last=False)


class _CheckOrigin(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, origin: RunOriginInterceptor) -> None:  # noqa: A002
        super().__init__(next)
        self._origin = origin

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:  # noqa: A002, ANN401
        await self._origin.check()
        return await super().execute_activity(input)
