"""DEQM ``GET /fhir/Measure/$care-gaps`` over a real socket, for a member stored in the care records store with an
open CMS122 gap (HbA1c 9.6 %) and a closed CMS165 one (132/84), and every refusal as an OperationOutcome."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.parameters import Parameters

from api.routes_care_gaps import ACCESS_ACTION
from store.access_log import AccessLog
from store.connect import configured_database
from tests.api.conftest import auth
from tests.tools.test_quality_measures import CMS122, CMS165, _diabetic, _hypertensive, blood_pressure, hba1c

CARE_GAPS = "/fhir/Measure/$care-gaps"
YEAR = {"periodStart": "2026-01-01", "periodEnd": "2026-12-31"}


@pytest.fixture
def token(approvers: dict[str, str]) -> str:
    return approvers["cc.jones"]


@pytest.fixture
def member_id(store) -> str:  # noqa: ANN001
    """A diabetic, hypertensive man stored in the records: CMS122 gap open (9.6 %), CMS165 gap closed (132/84)."""
    mid = f"cg-{uuid.uuid4().hex[:10]}"
    diabetic = _diabetic(mid, hba1c(mid, "2026-06-01T10:00:00Z", 9.6), blood_pressure(mid, "2026-09-01", 132, 84))
    hypertension = next(r for r in _hypertensive(mid) if r["resourceType"] == "Condition")
    store.put_many([{**diabetic[0], "gender": "male"}, *diabetic[1:], {**hypertension, "id": f"htn-{mid}"}])
    return mid


def _query(member: str, **extra: Any) -> dict[str, Any]:
    return {"subject": f"Patient/{member}", **YEAR, "measureId": [CMS122, CMS165], **extra}


def _bundle(response: httpx.Response) -> dict[str, Any]:
    assert 200 == response.status_code, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    Parameters.model_validate(response.json())
    (returned,) = response.json()["parameter"]
    assert "return" == returned["name"]
    return returned["resource"]


def _of(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _counts(report: dict[str, Any]) -> tuple[int, ...]:
    return tuple(p["count"] for p in report["group"][0]["population"])


async def test_care_gaps_of_a_stored_member(http: httpx.AsyncClient, token: str, member_id: str,
                                            settings) -> None:  # noqa: ANN001
    """A MeasureReport per measure asked, one DetectedIssue (CMS122), and a row in the access log."""
    started = datetime.now(UTC) - timedelta(seconds=1)
    bundle = _bundle(await http.get(CARE_GAPS, params=_query(member_id), headers=auth(token)))
    assert ("document", f"Patient/{member_id}") == (bundle["type"],
                                                    bundle["entry"][0]["resource"]["subject"]["reference"])
    reports = {r["measure"].split("/", 1)[1].split("|")[0]: r for r in _of(bundle, "MeasureReport")}
    assert {CMS122, CMS165} == set(reports)
    # initial-population, denominator, denominator-exclusion, numerator
    assert (1, 1, 0, 1) == _counts(reports[CMS122])  # inverse: in the numerator = poor control = gap open
    assert (1, 1, 0, 1) == _counts(reports[CMS165])  # controlled = gap closed
    assert {"reference": f"Observation/a1c-{member_id}"} in reports[CMS122]["evaluatedResource"]
    (issue,) = _of(bundle, "DetectedIssue")
    assert ([{"reference": f"urn:uuid:{reports[CMS122]['id']}"}], f"Patient/{member_id}", "preliminary") == (
        issue["implicated"], issue["patient"]["reference"], issue["status"])
    entries = [(e.action, e.outcome) for e in AccessLog(configured_database(settings)).entries(
        user_id="cc.jones", since=started)]
    assert (ACCESS_ACTION, "shown") in entries


async def test_status_open_gap_and_closed_gap(http: httpx.AsyncClient, token: str, member_id: str) -> None:
    """status=open-gap: only CMS122 with its DetectedIssue; status=closed-gap: only CMS165, no DetectedIssue."""
    opened = _bundle(await http.get(CARE_GAPS, params=_query(member_id, status="open-gap"), headers=auth(token)))
    closed = _bundle(await http.get(CARE_GAPS, params=_query(member_id, status="closed-gap"), headers=auth(token)))
    assert ([CMS122], 1) == ([r["measure"].split("/", 1)[1].split("|")[0] for r in _of(opened, "MeasureReport")],
                             len(_of(opened, "DetectedIssue")))
    assert ([CMS165], 0) == ([r["measure"].split("/", 1)[1].split("|")[0] for r in _of(closed, "MeasureReport")],
                             len(_of(closed, "DetectedIssue")))


async def test_every_shipped_measure_without_measure_id(http: httpx.AsyncClient, token: str, member_id: str) -> None:
    """No measureId: every shipped measure is reported (four), the member's two open gaps (CMS122; CMS125 does
    not apply to a man, MRP needs a discharge)."""
    query = {"subject": f"Patient/{member_id}", **YEAR}
    bundle = _bundle(await http.get(CARE_GAPS, params=query, headers=auth(token)))
    assert (4, 1) == (len(_of(bundle, "MeasureReport")), len(_of(bundle, "DetectedIssue")))


@pytest.mark.parametrize(("change", "status", "names"), [
    ({"subject": None}, 400, "subject is missing"),
    ({"subject": "Group/everyone"}, 400, "is not Patient/<id>"),
    ({"periodStart": None}, 400, "periodStart is missing"),
    ({"periodEnd": "2026-13-45"}, 400, "periodEnd '2026-13-45' does not parse"),
    ({"periodStart": "01/01/2026"}, 400, "periodStart '01/01/2026' does not parse"),
    ({"periodStart": "2026-12-31", "periodEnd": "2026-01-01"}, 400, "ends before it starts"),
    ({"status": "maybe-gap"}, 400, "status ['maybe-gap'] is not one of"),
    ({"measureId": [CMS122, "cms999-nothing"]}, 422, "measureId ['cms999-nothing'] is not a careloom measure"),
    ({"subject": "Patient/pt-nowhere"}, 404, "Patient/pt-nowhere is not in the plan's records"),
])
async def test_refusals_are_operation_outcomes(http: httpx.AsyncClient, token: str, member_id: str,
                                               change: dict[str, Any], status: int, names: str) -> None:
    query = {k: v for k, v in {**_query(member_id), **change}.items() if v is not None}
    refused = await http.get(CARE_GAPS, params=query, headers=auth(token))
    assert status == refused.status_code, refused.text
    outcome = OperationOutcome.model_validate(refused.json())
    assert names in outcome.issue[0].diagnostics


async def test_unknown_member_is_logged_and_no_token_is_401(http: httpx.AsyncClient, token: str,
                                                            settings) -> None:  # noqa: ANN001
    started = datetime.now(UTC) - timedelta(seconds=1)
    missing = await http.get(CARE_GAPS, params={"subject": "Patient/pt-gone", **YEAR}, headers=auth(token))
    assert 404 == missing.status_code
    entries = [(e.action, e.outcome) for e in AccessLog(configured_database(settings)).entries(
        user_id="cc.jones", since=started)]
    assert (ACCESS_ACTION, "not_found") in entries
    assert 401 == (await http.get(CARE_GAPS, params={"subject": "Patient/pt-gone", **YEAR})).status_code
