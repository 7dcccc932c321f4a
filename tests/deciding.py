"""Decisions as the API and CLI send them: signed, with the test session's key, for the run that runs now.

The session's workers trust exactly this key (``tests/conftest.py`` puts it in their settings), so a test
that decides through :func:`decide` exercises the real signing and the worker's own verification."""

from __future__ import annotations

from pydantic import SecretStr
from temporalio.client import Client

from agents.approvals import ApprovalDecision, DecisionResult
from runtime.signing import DecisionSigner, generate_signing_key, parse_signing_keys
from workflows.outreach_client import decide as _decide

__all__ = ["TEST_SIGNER", "TEST_SIGNING_KEYS", "decide"]

TEST_SIGNING_KEYS = SecretStr(f"test-session={generate_signing_key()}")
"""The session's signing key (``CARELOOM_SIGNING_KEYS`` of the session's settings), new each session."""
TEST_SIGNER = DecisionSigner(parse_signing_keys(TEST_SIGNING_KEYS.get_secret_value()))


async def decide(client: Client, workflow_id: str, decision: ApprovalDecision, *,
                 signer: DecisionSigner | None = TEST_SIGNER) -> DecisionResult:
    """``workflows.outreach_client.decide`` signed by the session's key (``signer=None``: unsigned)."""
    return await _decide(client, workflow_id, decision, signer=signer)
