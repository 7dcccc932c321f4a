"""The PHI rules shared by log redaction (``runtime.logging``) and de-identification before a model
(``agents.deidentify``): one set of direct-identifier fields and text patterns, so the two cannot drift."""

from __future__ import annotations

import re

__all__ = ["DIRECT_KEYS", "PATTERNS", "normalize_key"]

# Fields that hold a direct identifier whatever their value (45 CFR 164.514(b)(2)), by kind.
# Keys are compared after normalize_key: birth_date, birthDate and birth-date are one key.
DIRECT_KEYS = {
    "name": "NAME", "given": "NAME", "family": "NAME", "birthdate": "DATE", "dob": "DATE",
    "address": "ADDRESS", "line": "ADDRESS", "city": "ADDRESS", "postalcode": "ADDRESS", "zip": "ADDRESS",
    "phone": "PHONE", "email": "EMAIL", "telecom": "CONTACT", "ssn": "SSN",
}
# Identifiers written inside free text, by kind; applied in this order.
PATTERNS = (
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")),
    ("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("PHONE", re.compile(r"(?<![\w+])(?:\+?1[ .-]?)?\(?\b\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}\b")),
    ("MRN", re.compile(r"\b(?:MRN|mrn)[:# ]*[A-Za-z0-9-]+\b")),
)


def normalize_key(key: object) -> str:
    """A field name lower-cased without "_" and "-" (member_id, memberId and member-id compare equal)."""
    return str(key or "").lower().replace("_", "").replace("-", "")
