#!/usr/bin/env python3
"""Write sample_data/contact_preferences/Consent.ndjson: synthetic outreach opt-outs.

clinosim models no contact preferences; a payer keeps them in its CRM. This
script derives a deterministic synthetic set from the clinosim patients: a
member opts out of automated outreach when the first hex digit of
sha256("careloom-optout:" + Patient.id) is 0-4 (about 5 in 16 members;
chosen so that the demo shows the opt-out rule and, at any hour, a run that
completes on its own).
Each opt-out is an active FHIR Consent (scope patient-privacy) whose
provision denies outreach. Re-running it gives the same bytes.

    python3 sample_data/make_contact_preferences.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
PATIENTS = HERE / "fhir_r4" / "Patient.ndjson"
OUT = HERE / "contact_preferences" / "Consent.ndjson"


def opted_out(patient_id: str) -> bool:
    return hashlib.sha256(f"careloom-optout:{patient_id}".encode()).hexdigest()[0] in "01234"


def consent(patient_id: str) -> dict:
    return {
        "resourceType": "Consent",
        "id": f"consent-optout-{patient_id}",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"text": "outreach contact preference"}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": "2024-01-01",
        "provision": {"type": "deny", "purpose": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HOPERAT",
            "display": "healthcare operations"}]},
    }


def main() -> None:
    ids = sorted(json.loads(line)["id"] for line in PATIENTS.read_text().splitlines() if line.strip())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(consent(pid), separators=(",", ":")) for pid in ids if opted_out(pid)]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} of {len(ids)} members opted out -> {OUT}")


if __name__ == "__main__":
    main()
