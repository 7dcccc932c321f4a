"""Review of issue 20: an "approve" that approves fewer units than requested is a reduction, written with no MD.

``service_effect`` (what the worker's approval check and the guardrails both use) reads only the outcome and the
item decisions, so ``outcome=approve`` with an ``approved`` line whose ``approved_quantity`` is below the Claim's
quantity counts as "none": the worker writes "Certified in total" with the smaller quantity, no reviewer. The
planner copies the quantity from the run's input (``submission.items``), which anyone with Temporal access
writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError

from tests.pas_factory import make_pas_request
from tools.criteria import criteria_version_id, load_criteria
from tools.determination import IssueDeterminationArgs, ItemDecision, WriteDeterminationInput, write_claim_response
from tools.pas_request import parse_pas_bundle, save_submission


def test_an_approve_for_fewer_units_than_requested_needs_a_reviewer(store) -> None:
    request = make_pas_request(store, service_code="G0299", quantity=14)
    save_submission(store, request.bundle, parse_pas_bundle(request.bundle))
    args = IssueDeterminationArgs(outcome="approve", explanation="Every criterion met.",
                                  items=[ItemDecision(sequence=1, code="G0299", decision="approved",
                                                      approved_quantity=1)])
    data = WriteDeterminationInput(
        claim_id=request.claim_id, member_id=request.member_id, coverage_id=request.coverage_id,
        idempotency_key=f"review-{request.claim_id}/a1", approved_by=None, arguments=args,
        decided_at=datetime(2026, 3, 3, 15, 0, tzinfo=UTC), criteria_version=criteria_version_id(load_criteria()))

    with pytest.raises(ApplicationError, match="approve the requested quantity"):
        write_claim_response(store, data)  # before: "Certified in total", approved-quantity 1 of 14, no reviewer
    over = data.model_copy(update={"arguments": args.model_copy(update={"items": [ItemDecision(
        sequence=1, code="G0299", decision="approved", approved_quantity=365)]})})
    with pytest.raises(ApplicationError, match="approve the requested quantity"):
        write_claim_response(store, over)
    exact = data.model_copy(update={"arguments": args.model_copy(update={"items": [ItemDecision(
        sequence=1, code="G0299", decision="approved", approved_quantity=14)]})})
    assert write_claim_response(store, exact).created
