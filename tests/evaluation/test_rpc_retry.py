"""A slow machine cannot fail the evaluation's safety gate: transient Temporal RPC errors are retried, and what
remains is an infrastructure error, apart from case errors; a real case error still fails the gate."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from evaluation.metrics import compute
from evaluation.oracle import CaseResult
from evaluation.rpc_retry import RpcRetry, infrastructure_error, with_rpc_retries
from evaluation.runner import Harness
from evaluation.scenarios import load_suite
from runtime.errors import DecisionRefused
from runtime.settings import Settings
from runtime.temporal_server import EmbeddedTemporalServer
from tests.cli import ROOT
from tests.net import free_port

FAST = RpcRetry(attempts=3, first_pause=0.01, max_pause=0.02)


def rpc(status: RPCStatusCode, message: str = "context canceled") -> RPCError:
    return RPCError(message, status, b"")


def refused_after(err: Exception) -> DecisionRefused:
    """What workflows.inbox.decide raises for an RPC failure other than NOT_FOUND (``from None``)."""
    try:
        try:
            raise err
        except RPCError:
            raise DecisionRefused("unavailable", "Temporal refused the decision; retry shortly") from None
    except DecisionRefused as refused:
        return refused


@pytest.mark.parametrize(("err", "transient"), [
    (rpc(RPCStatusCode.CANCELLED), True),
    (rpc(RPCStatusCode.DEADLINE_EXCEEDED, "timeout"), True),
    (rpc(RPCStatusCode.UNAVAILABLE, "transport error"), True),
    (rpc(RPCStatusCode.RESOURCE_EXHAUSTED, "namespace rate limit exceeded"), True),
    (WorkflowUpdateRPCTimeoutOrCancelledError(), True),
    (refused_after(rpc(RPCStatusCode.UNAVAILABLE)), True),
    (rpc(RPCStatusCode.NOT_FOUND, "workflow not found"), False),
    (rpc(RPCStatusCode.INVALID_ARGUMENT, "bad query"), False),
    (refused_after(rpc(RPCStatusCode.PERMISSION_DENIED, "no")), False),
    (DecisionRefused("conflict", "stale digest"), False),
    (TimeoutError("run did not settle within 240 s"), False),
    (ValueError("data.files holds no Bundle with a Claim"), False),
])
def test_transient_rpc_failures_are_infrastructure_errors_and_nothing_else_is(err: Exception, transient: bool) -> None:
    assert transient == (infrastructure_error(err) is not None)


async def test_transient_failures_are_retried_with_backoff_until_the_call_gets_through() -> None:
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise rpc(RPCStatusCode.CANCELLED if len(calls) == 1 else RPCStatusCode.DEADLINE_EXCEEDED)
        return "answered"

    policy = RpcRetry(attempts=4, first_pause=0.05, max_pause=1.0)
    assert "answered" == await with_rpc_retries(flaky, policy)
    assert 3 == len(calls)
    assert calls[2] - calls[1] >= 0.1 > calls[1] - calls[0] >= 0.05  # the pause doubles


async def test_retries_are_bounded_and_other_errors_are_not_retried() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise rpc(RPCStatusCode.UNAVAILABLE, "transport error")

    with pytest.raises(RPCError):
        await with_rpc_retries(down, FAST)
    assert FAST.attempts == calls

    calls = 0

    async def unknown() -> None:
        nonlocal calls
        calls += 1
        raise rpc(RPCStatusCode.NOT_FOUND, "workflow not found")

    with pytest.raises(RPCError):
        await with_rpc_retries(unknown, FAST)
    assert 1 == calls
    with pytest.raises(ValueError, match="attempts >= 1"):
        RpcRetry(attempts=0)


def test_infrastructure_errors_are_reported_apart_and_do_not_fail_the_gate_but_case_errors_do() -> None:
    ok = CaseResult(id="fine", program="post-discharge-outreach", outcome_ok=True)
    slow = CaseResult(id="slow", program="post-discharge-outreach",
                      infrastructure_error="RPCError: context canceled (after 5 attempts)")
    broken = CaseResult(id="broken", program="post-discharge-outreach", error="ValueError: no Patient")
    gate = compute([ok, slow])
    assert (0, 1, 1, True) == (gate.errors, gate.infrastructure_errors, gate.cases_run, gate.passed)
    failing = compute([ok, slow, broken])
    assert (1, 1, False) == (failing.errors, failing.infrastructure_errors, failing.passed)
    assert ["errors"] == [g.metric for g in failing.gates if not g.passed]


async def test_a_case_whose_temporal_stops_answering_is_an_infrastructure_error_not_a_case_error(
        settings: Settings, store, tmp_path: Path) -> None:  # noqa: ANN001
    """A real dev server, stopped under the harness: the case is not judged (infrastructure error, after the
    bounded retries), the gate's error count stays 0. A case with bad data on a live server is a case error."""
    suite = load_suite(ROOT / "evaluation" / "suite" / "outreach")
    case = next(c for c in suite.cases if c.model is None and c.data.start == "explicit")  # Temporal calls only
    own = settings.model_copy(update={"state_dir": tmp_path / "state", "embedded_port": free_port(),
                                      "embedded_ui": False})
    server = EmbeddedTemporalServer(own)
    await server.start()
    try:
        client = await Client.connect(server.address, namespace=own.temporal_namespace)
        harness = Harness(own, client, store, datetime.now(UTC).replace(microsecond=0), timeout=30, rpc_retry=FAST)
        broken = case.model_copy(update={"data": case.data.model_copy(update={"member": None, "files": []})})
        bad = await harness.run_case(broken)
    finally:
        server.stop()
    assert bad.error is not None and bad.infrastructure_error is None  # a real case error stays one
    result = await harness.run_case(case)
    assert result.error is None, result.error
    assert result.infrastructure_error is not None and "RPCError" in result.infrastructure_error
    metrics = compute([result])
    assert (0, 1) == (metrics.errors, metrics.infrastructure_errors)
    assert all(g.passed for g in metrics.gates)
