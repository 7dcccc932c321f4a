"""Decisions as the API and CLI send them: signed, with the test session's key, for the run that runs now.

The session's workers trust exactly this key (``tests/conftest.py`` puts it in their settings), so a test
that decides through :func:`decide` exercises the real signing and the worker's own verification."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr
from temporalio.client import Client

from guardrails.approvals import ApprovalDecision, DecisionResult
from guardrails.signing import DecisionSigner, generate_signing_key, parse_signing_keys
from store.ledger import DecisionLedger, LedgerProblem
from store.ledger_entries import LedgerEntry
from workflows.inbox import decide as _decide

__all__ = ["ROTATION_KEYS", "TEST_SIGNER", "TEST_SIGNING_KEYS", "chain_problems", "decide", "ledger_entries"]

ROTATION_KEYS = [("current", generate_signing_key()), ("previous", generate_signing_key())]
"""Two more keys the session's workers trust, for the key-rotation tests (a run's policy may name either)."""
TEST_SIGNING_KEYS = SecretStr(",".join(f"{kid}={key}" for kid, key in
                                       [("test-session", generate_signing_key()), *ROTATION_KEYS]))
"""The session's signing keys (``CARELOOM_SIGNING_KEYS`` of the session's settings), new each session: the first
signs, the workers trust all three."""
TEST_SIGNER = DecisionSigner(parse_signing_keys(TEST_SIGNING_KEYS.get_secret_value())[:1])


def chain_problems(ledger: DecisionLedger, workflow_id: str) -> list[LedgerProblem]:
    """The ledger's problems except unverified decisions of other runs (the attack tests leave some on purpose
    in the session's shared ledger)."""
    return [p for p in ledger.verify()[1] if "was not verified" not in p.message or workflow_id in p.message]


async def decide(client: Client, workflow_id: str, decision: ApprovalDecision, *,
                 signer: DecisionSigner | None = TEST_SIGNER) -> DecisionResult:
    """``workflows.inbox.decide`` signed by the session's key (``signer=None``: unsigned)."""
    return await _decide(client, workflow_id, decision, signer=signer)


async def ledger_entries(ledger: DecisionLedger, workflow_id: str, event: str, *, timeout: float = 30.0
                         ) -> list[LedgerEntry]:
    """The run's entries once one ``event`` entry is there (the run appends after the step it is in: on a slower
    database that is a moment after the decision's answer)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        entries = ledger.entries(workflow_id)
        if any(e.event == event for e in entries) or asyncio.get_running_loop().time() > deadline:
            return entries
        await asyncio.sleep(0.2)
