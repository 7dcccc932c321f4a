"""Where a QuestionnaireResponse sent apart from its request is stored: a pend's answer, an appeal's new evidence."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tools.pas_diff import SUBMITTED_ID_SYSTEM
from tools.pas_request import scoped_id

__all__ = ["stored_form"]


def stored_form(response: dict[str, Any], claim_id: str, version: int) -> tuple[dict[str, Any], str]:
    """A checked response as stored: an id derived from its content and the request, the id it was sent with as an
    identifier; and the idempotency key it is stored under (the same response twice is stored once)."""
    digest = hashlib.sha256(json.dumps(response, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    stored = {**response, "id": scoped_id(claim_id, f"qr-{digest[:16]}", version)}
    if response.get("id"):
        stored["identifier"] = {"system": SUBMITTED_ID_SYSTEM, "value": str(response["id"])}
    return stored, f"questionnaire-response/{stored['id']}"
