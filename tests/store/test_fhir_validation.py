"""Tests for store.fhir_validation: R4B structure plus the required value sets the library leaves unchecked."""

from __future__ import annotations

import copy

import pytest
from fhir.resources.R4B import get_fhir_model_class

from store.fhir_validation import InvalidResource, validate_resource

TASK = {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order", "priority": "routine"}
CARE_PLAN = {
    "resourceType": "CarePlan", "id": "cp1", "status": "draft", "intent": "proposal",
    "subject": {"reference": "Patient/p1"},
    "activity": [{"detail": {"status": "not-started", "description": "PCP visit"}},
                 {"detail": {"status": "scheduled", "description": "Med reconciliation"}}],
}
GOAL = {"resourceType": "Goal", "id": "g1", "lifecycleStatus": "proposed", "description": {"text": "Walk daily"},
        "subject": {"reference": "Patient/p1"}}
COVERAGE = {"resourceType": "Coverage", "id": "c1", "status": "active", "beneficiary": {"reference": "Patient/p1"},
            "payor": [{"reference": "Organization/o1"}]}
CONSENT = {"resourceType": "Consent", "id": "cs1", "status": "active",
           "scope": {"coding": [{"code": "patient-privacy"}]}, "category": [{"text": "outreach"}]}
ELIGIBILITY = {"resourceType": "CoverageEligibilityResponse", "id": "e1", "status": "active",
               "purpose": ["validation"], "patient": {"reference": "Patient/p1"}, "created": "2024-06-10",
               "insurer": {"reference": "Organization/o1"}, "request": {"reference": "CoverageEligibilityRequest/r1"},
               "outcome": "complete"}
COMMUNICATION = {"resourceType": "Communication", "id": "m1", "status": "completed"}


def _with(resource: dict, path: tuple, value) -> dict:
    changed = copy.deepcopy(resource)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


@pytest.mark.parametrize("resource", [TASK, CARE_PLAN, GOAL, COVERAGE, CONSENT, ELIGIBILITY, COMMUNICATION])
def test_valid_resource_is_returned_unchanged(resource):
    """A valid R4B resource with in-set codes is returned as it was given."""
    assert resource == validate_resource(copy.deepcopy(resource))


def test_library_alone_accepts_a_bogus_task_status():
    """fhir.resources does not enforce value sets: Task.status 'bogus' parses (why the project checks itself)."""
    parsed = get_fhir_model_class("Task").model_validate(_with(TASK, ("status",), "bogus"))

    assert "bogus" == parsed.status


def test_bogus_task_status_is_refused():
    """Task.status 'bogus' is refused although fhir.resources accepts it."""
    with pytest.raises(InvalidResource, match=r"Task\.status = 'bogus' is not in its required value set"):
        validate_resource(_with(TASK, ("status",), "bogus"))


@pytest.mark.parametrize(("resource", "path"), [
    (TASK, ("intent",)),
    (TASK, ("priority",)),
    (CARE_PLAN, ("status",)),
    (CARE_PLAN, ("intent",)),
    (GOAL, ("lifecycleStatus",)),
    (COVERAGE, ("status",)),
    (CONSENT, ("status",)),
    (ELIGIBILITY, ("outcome",)),
    (COMMUNICATION, ("status",)),
])
def test_code_outside_required_value_set_is_refused(resource, path):
    """Every required binding careloom relies on is enforced."""
    with pytest.raises(InvalidResource, match="is not in its required value set"):
        validate_resource(_with(resource, path, "bogus"))


def test_bogus_eligibility_purpose_in_a_list_is_refused():
    """A repeating coded element is checked element by element."""
    with pytest.raises(InvalidResource, match=r"CoverageEligibilityResponse\.purpose = 'bogus'"):
        validate_resource(_with(ELIGIBILITY, ("purpose",), ["validation", "bogus"]))


def test_bogus_activity_detail_status_is_refused():
    """CarePlan.activity.detail.status is checked in every activity, not only the first."""
    with pytest.raises(InvalidResource, match=r"CarePlan\.activity\.detail\.status = 'bogus'"):
        validate_resource(_with(CARE_PLAN, ("activity", 1, "detail", "status"), "bogus"))


@pytest.mark.parametrize("status", ["draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
                                    "in-progress", "on-hold", "failed", "completed", "entered-in-error"])
def test_every_task_status_in_the_value_set_is_accepted(status):
    """All twelve Task.status codes pass."""
    assert status == validate_resource(_with(TASK, ("status",), status))["status"]


def test_unknown_resource_type_is_refused():
    """An unknown resourceType is refused, naming it."""
    with pytest.raises(InvalidResource, match="unknown resourceType 'Bogus'"):
        validate_resource({"resourceType": "Bogus", "id": "x"})


def test_missing_resource_type_is_refused():
    """A JSON object without resourceType is refused."""
    with pytest.raises(InvalidResource, match="missing resourceType"):
        validate_resource({"id": "x"})


def test_non_object_is_refused():
    """A JSON array is not a resource."""
    with pytest.raises(InvalidResource, match="expected a JSON object, got list"):
        validate_resource([TASK])


def test_missing_required_element_is_refused():
    """A Task without intent (required in R4B) is refused, naming the element."""
    task = {k: v for k, v in TASK.items() if k != "intent"}

    with pytest.raises(InvalidResource, match=r"Task is not valid FHIR R4: intent"):
        validate_resource(task)


def test_coverage_without_payor_is_refused():
    """Coverage.payor is required in R4B."""
    coverage = {k: v for k, v in COVERAGE.items() if k != "payor"}

    with pytest.raises(InvalidResource, match="payor"):
        validate_resource(coverage)


def test_r4_coverage_needs_no_r5_kind():
    """R4 Coverage has no 'kind' element; validation uses R4B, so it is not demanded."""
    assert COVERAGE == validate_resource(copy.deepcopy(COVERAGE))


def test_unknown_element_is_refused():
    """An element that R4B does not define is refused."""
    with pytest.raises(InvalidResource, match="Task is not valid FHIR R4:"):
        validate_resource({**TASK, "colour": "blue"})


def test_bad_primitive_format_is_refused():
    """A malformed dateTime is refused."""
    with pytest.raises(InvalidResource, match="authoredOn"):
        validate_resource({**TASK, "authoredOn": "tomorrow"})
