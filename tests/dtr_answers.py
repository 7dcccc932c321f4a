"""Completed DTR QuestionnaireResponses for tests: a provider's answer to a pend (tools.dtr's Questionnaire of the
request's service, answered by hand, attested by a Practitioner, naming the request in the qr-context extension)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tools.criteria import CriteriaSet, load_criteria
from tools.dtr import build_questionnaire
from tools.qr_answers import QR_CONTEXT

__all__ = ["completed_response"]

BASE = "https://payer.example"


def completed_response(claim_id: str, member_id: str, answers: dict[str, bool], *, code: str = "72148",
                       author: str = "Practitioner/pr-attesting", criteria: CriteriaSet | None = None,
                       response_id: str = "qr-answer-1", status: str = "completed") -> dict[str, Any]:
    """The questionnaire of ``code``'s policy answered ``answers`` (criterion id -> yes/no)."""
    criteria = criteria or load_criteria()
    policy = criteria.policy_for(code)
    assert policy is not None, f"no policy covers {code}"
    questionnaire = build_questionnaire(criteria, policy, base_url=BASE)
    items = [{"linkId": criterion, "answer": [{"valueBoolean": value}]} for criterion, value in answers.items()]
    items += [{"linkId": f"{criterion}.evidence", "answer": [{"valueString": "Documented in the office note."}]}
              for criterion, value in answers.items() if value]
    return {"resourceType": "QuestionnaireResponse", "id": response_id,
            "extension": [{"url": QR_CONTEXT, "valueReference": {"reference": f"Claim/{claim_id}"}}],
            "questionnaire": f"{questionnaire['url']}|{questionnaire['version']}", "status": status,
            "subject": {"reference": f"Patient/{member_id}"}, "authored": datetime.now(UTC).isoformat(),
            "author": {"reference": author}, "item": items}
