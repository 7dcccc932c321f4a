"""The plan's utilization-management medical policy: versioned, structured criteria per service.

The criteria ship with the project (``tools/criteria/um-medical-policy-<version>.json``) and are
validated when loaded, so a bad edit fails at start with the file, the field and the fix — not
later inside a workflow. A determination records :func:`criteria_version_id`, which changes when
any criterion does, so an audit knows exactly which text was applied.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runtime.errors import CriteriaFileError

if TYPE_CHECKING:  # settings are read by hosts; run code imports the criteria models alone
    from runtime.settings import Settings

__all__ = [
    "CRITERIA_NAME",
    "DEFAULT_CRITERIA_PATH",
    "CriteriaFileError",
    "CriteriaSet",
    "Criterion",
    "ServiceCategory",
    "ServicePolicy",
    "criteria_version_id",
    "load_criteria",
    "criteria_for",
]

CRITERIA_NAME = "um-medical-policy"
DEFAULT_CRITERIA_PATH = Path(__file__).resolve().parent / "criteria" / "um-medical-policy-2026.1.json"

ServiceCategory = Literal["advanced-imaging", "home-health", "skilled-nursing-facility"]

_ID = r"^[a-z0-9][a-z0-9-]*$"




class Criterion(BaseModel):
    """One medical-necessity criterion and the phrases that document it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    criterion_id: str = Field(pattern=_ID, description="Unique within its policy; cited by determinations.")
    description: str = Field(min_length=3)
    evidence_terms: list[str] = Field(
        min_length=1,
        description="Case-insensitive phrases whose presence (not negated) in a note is evidence.")
    min_citations: int = Field(default=1, ge=1, description="Citations needed for the criterion to be met.")

    @model_validator(mode="after")
    def _terms_are_phrases(self) -> Criterion:
        if any(not term.strip() for term in self.evidence_terms):
            raise ValueError("evidence_terms holds an empty phrase: remove it or write the phrase")
        # A phrase is matched as words (tools/evidence.py); one with no letter or digit has no word to match.
        wordless = [term for term in self.evidence_terms if not re.search(r"\w", term)]
        if wordless:
            raise ValueError(f"evidence_terms holds {', '.join(map(repr, wordless))}, which has no letter or digit:"
                             " write the phrase's words")
        lowered = [term.strip().lower() for term in self.evidence_terms]
        duplicates = sorted({term for term in lowered if lowered.count(term) > 1})
        if duplicates:
            raise ValueError(f"evidence_terms repeats {', '.join(duplicates)} (case-insensitively): keep one")
        return self


class ServicePolicy(BaseModel):
    """The criteria for one service (a set of CPT/HCPCS/revenue codes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_id: str = Field(pattern=_ID)
    title: str = Field(min_length=3)
    category: ServiceCategory
    codes: list[str] = Field(min_length=1, description="CPT, HCPCS or NUBC revenue codes this policy covers.")
    criteria: list[Criterion] = Field(min_length=1)
    auto_approve_when_met: bool = Field(
        description="Whether a request meeting every criterion may be approved without a reviewer.")

    @model_validator(mode="after")
    def _unique_criterion_ids(self) -> ServicePolicy:
        seen: dict[str, int] = {}
        for index, criterion in enumerate(self.criteria):
            if criterion.criterion_id in seen:
                raise ValueError(
                    f"criterion_id {criterion.criterion_id!r} is used by criteria[{seen[criterion.criterion_id]}]"
                    f" and criteria[{index}]: give each criterion its own id")
            seen[criterion.criterion_id] = index
        return self


class CriteriaSet(BaseModel):
    """Every service policy of one version of the medical policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=r"^[0-9]{4}\.[0-9]+$", description="e.g. 2026.1: year and revision.")
    effective: date
    services: list[ServicePolicy] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids_and_codes(self) -> CriteriaSet:
        policies: dict[str, int] = {}
        codes: dict[str, int] = {}
        for index, policy in enumerate(self.services):
            if policy.policy_id in policies:
                raise ValueError(
                    f"policy_id {policy.policy_id!r} is used by services[{policies[policy.policy_id]}] and"
                    f" services[{index}]: give each policy its own id")
            policies[policy.policy_id] = index
            for code in policy.codes:
                # One code, one policy: otherwise which criteria apply to a request would be ambiguous.
                if code in codes and codes[code] != index:
                    raise ValueError(
                        f"code {code!r} is in services[{codes[code]}] and services[{index}]: a code belongs"
                        " to exactly one policy, remove it from one of them")
                codes[code] = index
        return self

    def policy_for(self, code: str) -> ServicePolicy | None:
        """The policy covering a service code, or None when the plan has no criteria for it."""
        for policy in self.services:
            if code in policy.codes:
                return policy
        return None

    @property
    def known_codes(self) -> list[str]:
        """Every code some policy covers, sorted."""
        return sorted(code for policy in self.services for code in policy.codes)


def criteria_version_id(criteria: CriteriaSet) -> str:
    """``um-medical-policy@<version>+sha256:<12 hex>`` of the canonical JSON: any edit changes it."""
    canonical = json.dumps(criteria.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return f"{CRITERIA_NAME}@{criteria.version}+sha256:{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


# The model found at each list field, to name the allowed fields of the object an error is in.
_CHILD_MODELS: dict[str, type[BaseModel]] = {"services": ServicePolicy, "criteria": Criterion}


def _where(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error: dict) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        model: type[BaseModel] = CriteriaSet
        for part in loc[:-1]:
            if isinstance(part, str):
                model = _CHILD_MODELS.get(part, model)
        allowed = ", ".join(model.model_fields)
        return f"unknown field `{loc[-1]}` at {_where(loc[:-1])}: remove it; allowed fields are {allowed}"
    if error["type"] == "missing":
        return f"missing field `{loc[-1]}` at {_where(loc[:-1])}: add it"
    message = error["msg"].removeprefix("Value error, ")
    return f"{_where(loc)}: {message}" + ("" if ":" in message else "; fix the value")


def load_criteria(path: Path | None = None) -> CriteriaSet:
    """Load and validate a criteria file (default: the shipped policy); raise CriteriaFileError."""
    source = path or DEFAULT_CRITERIA_PATH
    try:
        raw = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CriteriaFileError(
            f"{source} does not exist: pass the path of a criteria JSON file, or none for the shipped"
            f" {DEFAULT_CRITERIA_PATH.name}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CriteriaFileError(
            f"{source}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}): fix the syntax"
        ) from None
    try:
        return CriteriaSet.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(_describe(e) for e in err.errors())
        raise CriteriaFileError(f"{source}: {err.error_count()} problem(s): {problems}") from None


def criteria_for(settings: Settings) -> CriteriaSet:
    """The medical-policy criteria prior-authorization runs are triaged under: CARELOOM_UM_CRITERIA_FILE, or the
    shipped policy."""
    return load_criteria(settings.um_criteria_file)
