"""Tests for tools.tasks: create_task writes one FHIR Task per idempotency key."""

from __future__ import annotations

from datetime import UTC, datetime

from fhir.resources.R4B.task import Task

from store.fhir_validation import validate_resource
from tests.fhir_factory import make_member
from tools.tasks import ADVERSE_TASK_KINDS, CreateTaskArgs, CreateTaskInput, create_task

AUTHORED = datetime(2024, 6, 10, 19, 0, tzinfo=UTC)
DUE = datetime(2024, 6, 11, 21, 0, tzinfo=UTC)


def _input(member, key="wf-1#a2-task", approved_by=None, kind="tcm-interactive-contact") -> CreateTaskInput:
    return CreateTaskInput(
        member_id=member.member_id, encounter_id=member.encounter_id, idempotency_key=key,
        approved_by=approved_by, authored_at=AUTHORED,
        arguments=CreateTaskArgs(kind=kind, queue="care-management/post-discharge", priority="urgent",
                                 description="Call the member", reason="TCM within 2 business days", due=DUE),
    )


def _stored_task(store, reference):
    return store.get("Task", reference.split("/")[1])


def test_task_validates_with_value_sets(store):
    """The Task written validates with the project's validator (R4B plus required value sets)."""
    task = _stored_task(store, create_task(store, _input(make_member(store))).reference)

    assert task == validate_resource(task)


def test_task_validates_directly_with_fhir_resources(store):
    """The Task parses as a fhir.resources R4B Task (requested order, for the member, due at the deadline)."""
    member = make_member(store)
    task = Task.model_validate(_stored_task(store, create_task(store, _input(member)).reference))

    assert ("requested", "order", "urgent", f"Patient/{member.member_id}", DUE) == (
        task.status, task.intent, task.priority, task.for_fhir.reference, task.restriction.period.end)


def test_task_names_its_kind_and_queue(store):
    """The Task's code is the task kind and its owner the work queue."""
    member = make_member(store)
    task = _stored_task(store, create_task(store, _input(member, kind="medication-reconciliation")).reference)

    assert ("medication-reconciliation", "care-management/post-discharge") == (
        task["code"]["coding"][0]["code"], task["owner"]["identifier"]["value"])


def test_same_idempotency_key_twice_writes_one_task(store):
    """A retry with the same key returns the same Task with created False."""
    member = make_member(store)
    first = create_task(store, _input(member))
    second = create_task(store, _input(member))

    assert ((first.reference, True), (first.reference, False), 1) == (
        (first.reference, first.created), (second.reference, second.created), store.count("Task"))


def test_approver_is_noted_on_the_task(store):
    """A human approval is recorded in the Task's note."""
    member = make_member(store)
    task = _stored_task(store, create_task(store, _input(member, approved_by="md-smith")).reference)

    assert [{"text": "Approved by md-smith."}] == task["note"]


def test_task_is_indexed_for_its_member(store):
    """The Task is found among the member's resources."""
    member = make_member(store)
    result = create_task(store, _input(member))

    assert [result.reference] == [f"Task/{t['id']}" for t in store.find_for_member("Task", member.member_id)]


def test_adverse_task_kinds():
    """close-care-episode terminates and reduce-service reduces a service, by nature."""
    assert {"close-care-episode": "terminates", "reduce-service": "reduces"} == ADVERSE_TASK_KINDS
