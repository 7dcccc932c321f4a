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


def test_authored_on_is_when_the_task_is_written_not_the_discharge(store):
    """The input's time (the discharge, as runs pass it) is not what authoredOn says: the write's time is."""
    member = make_member(store)
    before = datetime.now(UTC)
    task = _stored_task(store, create_task(store, _input(member)).reference)
    authored = datetime.fromisoformat(task["authoredOn"])

    assert (True, False) == (before <= authored <= datetime.now(UTC), authored == AUTHORED)


def test_a_retried_write_returns_the_first_task_with_its_first_time(store):
    """A retry an hour later returns the Task as first written: same authoredOn, nothing rewritten."""
    member = make_member(store)
    first_at, retry_at = datetime(2026, 1, 5, 9, tzinfo=UTC), datetime(2026, 1, 5, 10, tzinfo=UTC)
    first = create_task(store, _input(member), now=first_at)
    second = create_task(store, _input(member), now=retry_at)

    assert (first.reference, False, first_at.isoformat()) == (
        second.reference, second.created, _stored_task(store, second.reference)["authoredOn"])


def test_fulfilment_period_runs_from_the_write_to_the_due_time(store):
    """Written before it is due: restriction.period starts at the write and ends at the due time."""
    member = make_member(store)
    written = datetime(2024, 6, 10, 20, tzinfo=UTC)
    task = _stored_task(store, create_task(store, _input(member), now=written).reference)

    assert {"start": written.isoformat(), "end": DUE.isoformat()} == task["restriction"]["period"]


def test_a_task_written_after_its_due_time_has_only_an_end_and_still_validates(store):
    """An old discharge's TCM task is overdue when written: the period has no start after its end (FHIR per-1)."""
    member = make_member(store)
    task = _stored_task(store, create_task(store, _input(member), now=datetime(2026, 1, 5, tzinfo=UTC)).reference)

    assert ({"end": DUE.isoformat()}, task) == (task["restriction"]["period"], validate_resource(task))
