"""A documented generative model of members with index inpatient stays and 30-day readmissions, as FHIR R4.

Why not clinosim: clinosim 0.6.5 (the ``data`` extra) does simulate 30-day readmissions
(``clinosim.simulator.discharge_gate._evaluate_readmission``), but its probability is the disease's benchmark
rate times small multipliers for age (x1.05 at 70, x1.1 at 80), chronic-condition count (+0.01 each),
inflammation at discharge and a missed diagnosis, capped at 1.5x the benchmark: it does not depend on prior
admissions, ED visits, length of stay or the discharge disposition, so neither LACE nor a learned model has
anything to learn from it. This module writes members in the shapes of ``evaluation/synthetic.py`` (the
project's clinosim-shaped records: Patient, Coverage, Encounter, Condition) from a stated model instead.

The model (``rng = numpy.random.default_rng(seed)``; one member after another, so a seed gives the same data):

* plan: Medicare Advantage 55 %, dual eligible 20 %, Medicaid 15 %, commercial 10 %; age from the plan
  (65-99 for Medicare, 20 % of duals 40-64, 18-64 for Medicaid and commercial); female 55 %.
* a latent frailty ``z ~ N(0, 1)``, never written to the records.
* Charlson conditions (one ICD-10-CM code each, recorded 60-700 days before the admission), prevalence rising with
  age and frailty.
* prior inpatient stays in the 12 months ~ Poisson(exp(-1.4 + 0.5 HF + 0.3 COPD + 0.3 renal + 0.5 z)),
  ED visits in the 6 months ~ Poisson(exp(-1.0 + 0.35 [dual or Medicaid] + 0.2 COPD + 0.4 z)).
* the index stay: LOS 1 + Poisson(exp(0.9 + 0.08 CCI + 0.25 [age>=80])), emergent 80 %, disposition from age
  and LOS (SNF, home health, rehab, against advice, home).
* readmission within 30 days ~ Bernoulli(sigmoid(logit)) with
  ``logit = -3.3 + 0.07 LACE + 0.10 prior + 0.7 HF x min(prior, 4) + 1.3 [age>=80 and home without home
  health] + 1.4 [age<65 and left against advice] + 1.0 [dual and ED>=2] + 0.8 [complicated diabetes and renal]
  - 0.6 [LOS>=14] + 0.35 z``: LACE's additive points carry part of the risk; the interactions and the
  non-monotone LOS term are what a learned model can find and LACE cannot.
* after the discharge: the readmission (an inpatient stay 1-29 days later) when the draw says so, a later stay
  at 35-120 days for 8 % of the others (outside the window), and records a leaky feature builder would pick up
  (ED visits, a new diagnosis, for some members a plan change) dated after the discharge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

__all__ = ["COVERAGE_TEXT", "IndexStay", "simulate_members"]

FIRST_DISCHARGE = datetime(2025, 1, 1, tzinfo=UTC)
DISCHARGE_SPAN_DAYS = 270
COVERAGE_TEXT = {"medicare_advantage": "Medicare Advantage (Part C)",
                 "dual": "Medicare + Medicaid (dual eligible)",
                 "medicaid": "Medicaid managed care", "commercial": "Commercial (employer group)"}
# category -> (ICD-10-CM code, base prevalence, per-decade-over-65 lift)
_CONDITIONS = {
    "congestive_heart_failure": ("I50.9", 0.14, 0.04), "chronic_pulmonary": ("J44.9", 0.16, 0.01),
    "diabetes_uncomplicated": ("E11.9", 0.18, 0.0), "diabetes_complicated": ("E11.22", 0.10, 0.01),
    "renal": ("N18.4", 0.14, 0.03), "myocardial_infarction": ("I21.4", 0.07, 0.02),
    "cerebrovascular": ("I63.9", 0.07, 0.03), "dementia": ("F03.90", 0.03, 0.06),
    "malignancy": ("C34.90", 0.05, 0.01), "metastatic_solid_tumour": ("C78.00", 0.02, 0.0),
    "mild_liver": ("K74.60", 0.03, 0.0), "peripheral_vascular": ("I70.209", 0.05, 0.02),
}


@dataclass(frozen=True)
class IndexStay:
    """One generated member's index stay (the cohort row; the label is read back from the records)."""

    member_id: str
    encounter_id: str
    discharged_at: str


def _z(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _encounter(eid: str, member_id: str, klass: str, start: datetime, end: datetime, *,
               admit_source: str | None = None, disposition: str | None = None,
               priority: str | None = None) -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter", "id": eid, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": f"Patient/{member_id}"}, "period": {"start": _z(start), "end": _z(end)},
    }
    if priority:
        enc["priority"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
                                       "code": priority}]}
    hosp: dict[str, Any] = {}
    if admit_source:
        hosp["admitSource"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/admit-source",
                                           "code": admit_source}]}
    if disposition:
        hosp["dischargeDisposition"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": disposition}]}
    if hosp:
        enc["hospitalization"] = hosp
    return enc


def _condition(cid: str, member_id: str, code: str, recorded: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Condition", "id": cid,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
        "subject": {"reference": f"Patient/{member_id}"}, "recordedDate": _z(recorded),
    }


def _coverage(cid: str, member_id: str, plan: str, start: str, end: str) -> dict[str, Any]:
    return {"resourceType": "Coverage", "id": cid, "status": "active",
            "beneficiary": {"reference": f"Patient/{member_id}"}, "payor": [{"reference": "Organization/payer-x"}],
            "type": {"text": COVERAGE_TEXT[plan]}, "period": {"start": start, "end": end}}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _lace_points(los: int, acute: bool, cci: int, ed: int) -> int:
    los_pts = 0 if los < 1 else los if los <= 3 else 4 if los <= 6 else 5 if los <= 13 else 7
    return los_pts + (3 if acute else 0) + (cci if cci <= 3 else 5) + min(ed, 4)


_WEIGHTS = {"congestive_heart_failure": 1, "chronic_pulmonary": 1, "diabetes_uncomplicated": 1,
            "diabetes_complicated": 2, "renal": 2, "myocardial_infarction": 1, "cerebrovascular": 1,
            "dementia": 1, "malignancy": 2, "metastatic_solid_tumour": 6, "mild_liver": 1,
            "peripheral_vascular": 1}


def _member(rng: np.random.Generator, n: int) -> tuple[IndexStay, list[dict[str, Any]]]:  # noqa: PLR0915
    member_id, index_id = f"pt-sim-{n:06d}", f"enc-sim-{n:06d}"
    plan = str(rng.choice(["medicare_advantage", "dual", "medicaid", "commercial"], p=[0.55, 0.20, 0.15, 0.10]))
    if plan == "medicare_advantage" or (plan == "dual" and rng.random() < 0.8):
        age = int(min(99, 65 + rng.gamma(2.0, 6.0)))
    else:
        age = int(rng.integers(40, 65)) if plan == "dual" else int(rng.integers(18, 65))
    female = rng.random() < 0.55
    z = float(rng.normal())
    decades = max(0.0, (age - 65) / 10)
    present = {c for c, (_, base, lift) in _CONDITIONS.items()
               if rng.random() < min(0.9, (base + lift * decades) * math.exp(0.3 * z))}
    if "diabetes_complicated" in present:
        present.discard("diabetes_uncomplicated")
    if "metastatic_solid_tumour" in present:
        present.discard("malignancy")
    hf, copd, renal = ("congestive_heart_failure" in present), ("chronic_pulmonary" in present), ("renal" in present)
    cci = sum(_WEIGHTS[c] for c in present)
    prior = int(min(6, rng.poisson(math.exp(-1.4 + 0.5 * hf + 0.3 * copd + 0.3 * renal + 0.5 * z))))
    ed = int(min(8, rng.poisson(math.exp(-1.0 + 0.35 * (plan in ("dual", "medicaid")) + 0.2 * copd + 0.4 * z))))
    los = int(min(30, 1 + rng.poisson(math.exp(0.9 + 0.08 * cci + 0.25 * (age >= 80)))))
    acute = rng.random() < 0.8
    p_snf = _sigmoid(-3.2 + 0.07 * (age - 65) + 0.15 * los)
    draw = rng.random()
    if draw < p_snf:
        disposition = "snf"
    elif draw < p_snf + 0.15:
        disposition = "alt-home"  # home with home health
    elif draw < p_snf + 0.20:
        disposition = "rehab"
    elif draw < p_snf + 0.20 + (0.06 if age < 65 else 0.01):
        disposition = "aadvice"
    else:
        disposition = "home"
    lace_total = _lace_points(los, acute, cci, ed)
    logit = (-3.3 + 0.07 * lace_total + 0.10 * prior + 0.7 * hf * min(prior, 4)
             + 1.3 * (age >= 80 and disposition == "home") + 1.4 * (age < 65 and disposition == "aadvice")
             + 1.0 * (plan == "dual" and ed >= 2)
             + 0.8 * ("diabetes_complicated" in present and renal) - 0.6 * (los >= 14) + 0.35 * z)
    readmitted = rng.random() < _sigmoid(logit)

    discharged = (FIRST_DISCHARGE + timedelta(days=int(rng.integers(0, DISCHARGE_SPAN_DAYS)),
                                              hours=int(rng.integers(10, 17)), minutes=int(rng.integers(0, 60))))
    admitted = discharged.replace(hour=int(rng.integers(12, 21))) - timedelta(days=los)
    if los == 0 or admitted >= discharged:
        admitted = discharged - timedelta(hours=6)
    born = discharged.date().replace(year=discharged.year - age) - timedelta(days=int(rng.integers(1, 360)))
    patient = {"resourceType": "Patient", "id": member_id, "active": True,
               "name": [{"family": f"Sim{n:06d}", "given": ["Member"]}],
               "gender": "female" if female else "male", "birthDate": born.isoformat(),
               "address": [{"use": "home", "line": ["1 Main St"], "city": "Worcester", "state": "MA"}]}
    out: list[dict[str, Any]] = [patient]
    plan_change = rng.random() < 0.05
    cov_end = (discharged + timedelta(days=60)).date().isoformat() if plan_change else "2099-12-31"
    out.append(_coverage(f"cov-sim-{n:06d}", member_id, plan, "2020-01-01", cov_end))
    if plan_change:
        new_plan = "commercial" if plan != "commercial" else "medicaid"
        out.append(_coverage(f"cov-sim-{n:06d}-b", member_id, new_plan,
                             (discharged + timedelta(days=61)).date().isoformat(), "2099-12-31"))
    out.append(_encounter(index_id, member_id, "IMP", admitted, discharged, admit_source="emd" if acute else "phys",
                          disposition=disposition, priority="EM" if acute else "EL"))
    if acute:  # the ED visit that led to the admission (part of the index visit)
        out.append(_encounter(f"{index_id}-ed", member_id, "EMER", admitted - timedelta(hours=4), admitted,
                              admit_source="outp"))
    for k, offset in enumerate(sorted(rng.choice(np.arange(20, 360, 14), size=prior, replace=False))):
        start = admitted - timedelta(days=int(offset))
        out.append(_encounter(f"{index_id}-prior{k}", member_id, "IMP", start,
                              start + timedelta(days=int(rng.integers(2, 7))), admit_source="emd",
                              disposition="home", priority="EM"))
    for k, offset in enumerate(sorted(rng.choice(np.arange(3, 178, 3), size=ed, replace=False))):
        start = admitted - timedelta(days=int(offset), hours=5)
        out.append(_encounter(f"{index_id}-ed{k}", member_id, "EMER", start, start + timedelta(hours=3),
                              admit_source="outp"))
    if rng.random() < 0.2:  # an old ED visit and stay, outside the look-back windows
        old = admitted - timedelta(days=int(rng.integers(400, 700)))
        out.append(_encounter(f"{index_id}-old-ed", member_id, "EMER", old, old + timedelta(hours=2),
                              admit_source="outp"))
        out.append(_encounter(f"{index_id}-old-stay", member_id, "IMP", old + timedelta(days=1),
                              old + timedelta(days=4), admit_source="emd", disposition="home", priority="EM"))
    for k, category in enumerate(sorted(present)):
        out.append(_condition(f"cond-sim-{n:06d}-{k}", member_id, _CONDITIONS[category][0],
                              admitted - timedelta(days=int(rng.integers(60, 700)))))
    # After the discharge: the label's stay, and records no feature may read.
    if readmitted:
        start = discharged + timedelta(days=int(rng.integers(1, 30)), hours=-int(rng.integers(0, 20)))
        out.append(_encounter(f"{index_id}-readmit", member_id, "IMP", start, start + timedelta(days=3),
                              admit_source="emd", disposition="home", priority="EM"))
    elif rng.random() < 0.08:
        start = discharged + timedelta(days=int(rng.integers(35, 121)))
        out.append(_encounter(f"{index_id}-later", member_id, "IMP", start, start + timedelta(days=3),
                              admit_source="emd", disposition="home", priority="EM"))
    if rng.random() < (0.5 if readmitted else 0.1):
        start = discharged + timedelta(days=int(rng.integers(1, 28)))
        out.append(_encounter(f"{index_id}-after-ed", member_id, "EMER", start, start + timedelta(hours=3),
                              admit_source="outp"))
    if readmitted and rng.random() < 0.3:
        out.append(_condition(f"cond-sim-{n:06d}-after", member_id, "I50.9", discharged + timedelta(days=2)))
    return IndexStay(member_id, index_id, _z(discharged)), out


def simulate_members(members: int, seed: int) -> Iterator[tuple[IndexStay, list[dict[str, Any]]]]:
    """``members`` generated members, each (its index stay, its FHIR resources); same seed, same data."""
    rng = np.random.default_rng(seed)
    for n in range(members):
        yield _member(rng, n)
