"""Transient Temporal RPC failures in the evaluation harness: retried with backoff, and told apart from case
errors when they outlast the retries.

On a loaded machine the harness's own calls (start, describe, query, decide, terminate) can fail with
``context canceled`` or a deadline: the server or the client was slow, nothing is wrong with the case. Counted
as case errors they failed the safety gate (``errors == 0``). Every such call is idempotent here (a run's id
is its business key, a repeated identical decision returns its first result, describe and query only read), so
it is retried; one that still fails is an *infrastructure error*, reported on its own and kept out of the case
errors and the safety figures. Anything else (a refusal, a timeout of the case itself, a bad record) stays a
case error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

__all__ = ["TRANSIENT_STATUSES", "RpcRetry", "infrastructure_error", "with_rpc_retries"]

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                                RPCStatusCode.CANCELLED, RPCStatusCode.RESOURCE_EXHAUSTED})
"""gRPC statuses that say the call did not get through in time, not that it was refused."""


@dataclass(frozen=True)
class RpcRetry:
    """Bounded retries: ``attempts`` calls in all, pauses ``first_pause`` doubling up to ``max_pause``."""

    attempts: int = 5
    first_pause: float = 0.5
    max_pause: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_pause < 0 or self.max_pause < self.first_pause:
            raise ValueError(f"RpcRetry needs attempts >= 1 and 0 <= first_pause <= max_pause, not {self}")

    def pause(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_pause, self.first_pause * 2 ** (attempt - 1))


def infrastructure_error(err: BaseException) -> RPCError | WorkflowUpdateRPCTimeoutOrCancelledError | None:
    """The transient Temporal failure behind ``err`` (itself, or its cause or context: clients re-raise them
    as their own errors, e.g. a decision ``unavailable``), or None when ``err`` is something else."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RPCError):
            return current if current.status in TRANSIENT_STATUSES else None
        if isinstance(current, WorkflowUpdateRPCTimeoutOrCancelledError):
            return current
        current = current.__cause__ or current.__context__
    return None


async def with_rpc_retries(call: Callable[[], Awaitable[T]], policy: RpcRetry = RpcRetry()) -> T:
    """``await call()``, again after a pause while it fails with a transient Temporal error, at most
    ``policy.attempts`` times; the last error (or any other error, at once) is raised."""
    attempt = 1
    while True:
        try:
            return await call()
        except Exception as err:
            if attempt >= policy.attempts or infrastructure_error(err) is None:
                raise
        await asyncio.sleep(policy.pause(attempt))
        attempt += 1
