"""Tests for store.records: the SQLite care records store."""

from __future__ import annotations

import pytest

from store.fhir_validation import InvalidResource
from store.records import member_of, period_of
from store.sql_records import SqlCareRecordStore
from tests.fhir_factory import make_member


def _task(tid: str, status: str = "requested", member: str = "p1", authored: str = "2024-06-10T12:00:00Z") -> dict:
    return {"resourceType": "Task", "id": tid, "status": status, "intent": "order",
            "for": {"reference": f"Patient/{member}"}, "authoredOn": authored}


def _encounter(eid: str, member: str, start: str, end: str | None = None) -> dict:
    period = {"start": start, **({"end": end} if end else {})}
    return {"resourceType": "Encounter", "id": eid, "status": "finished", "class": {"code": "IMP"},
            "subject": {"reference": f"Patient/{member}"}, "period": period}


# --- put_many / get ----------------------------------------------------------

def test_get_returns_what_was_put(store):
    """A stored resource is read back equal to what was written."""
    member = make_member(store)

    assert member.resources[0] == store.get("Patient", member.member_id)


def test_get_unknown_resource_is_none(store):
    """An id that is not stored gives None."""
    assert None is store.get("Patient", "pt-none")


def test_put_many_reports_inserted_unchanged_and_updated(store):
    """A new resource is inserted, the same content again is unchanged, changed content is updated."""
    outcomes = [store.put_many([_task("t1")]), store.put_many([_task("t1")]),
                store.put_many([_task("t1", status="completed")])]

    assert ([["inserted"], ["unchanged"], ["updated"]], "completed") == (outcomes, store.get("Task", "t1")["status"])


def test_key_order_does_not_make_content_differ(store):
    """The same resource with its keys in another order is unchanged (canonical JSON)."""
    store.put_many([_task("t1")])

    assert ["unchanged"] == store.put_many([dict(reversed(list(_task("t1").items())))])


def test_records_persist_in_the_file(tmp_path):
    """A second store on the same file reads what the first wrote."""
    first = SqlCareRecordStore(tmp_path / "r.db")
    first.put_many([_task("t1")])
    first.close()
    second = SqlCareRecordStore(tmp_path / "r.db")

    assert _task("t1") == second.get("Task", "t1")
    second.close()


def test_count_by_type(store):
    """count() counts all resources or those of one type (Patient, Coverage, 2 Encounters, 2 Conditions)."""
    make_member(store, codes=("I50.9", "E11.9"))

    assert (1, 2, 6) == (store.count("Patient"), store.count("Condition"), store.count())


# --- find_for_member / ended_between -----------------------------------------

def test_find_for_member_returns_only_that_member_and_type_oldest_first(store):
    """Resources of one type about one member come back oldest first."""
    store.put_many([_encounter("e2", "p1", "2024-03-01T00:00:00Z"), _encounter("e1", "p1", "2024-01-01T00:00:00Z"),
                    _encounter("e3", "p2", "2024-02-01T00:00:00Z"), _task("t1", member="p1")])

    assert ["e1", "e2"] == [e["id"] for e in store.find_for_member("Encounter", "p1")]


def test_find_for_member_bounds_by_start(store):
    """start_after is inclusive and start_before exclusive."""
    store.put_many([_encounter(f"e{m}", "p1", f"2024-0{m}-01T00:00:00Z") for m in (1, 2, 3, 4)])
    found = store.find_for_member("Encounter", "p1", start_after="2024-02-01T00:00:00Z",
                                  start_before="2024-04-01T00:00:00Z")

    assert ["e2", "e3"] == [e["id"] for e in found]


def test_ended_between_finds_discharges_in_a_window(store):
    """ended_between returns resources whose period ends in [start, end)."""
    store.put_many([_encounter("e1", "p1", "2024-06-01T00:00:00Z", "2024-06-05T00:00:00Z"),
                    _encounter("e2", "p1", "2024-06-01T00:00:00Z", "2024-06-10T00:00:00Z"),
                    _encounter("e3", "p1", "2024-06-01T00:00:00Z")])

    assert ["e1"] == [e["id"] for e in store.ended_between("Encounter", "2024-06-05", "2024-06-10")]


@pytest.mark.parametrize(("resource", "member"), [
    ({"resourceType": "Patient", "id": "p9"}, "p9"),
    ({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p9"}}, "p9"),
    ({"resourceType": "Consent", "patient": {"reference": "Patient/p9"}}, "p9"),
    ({"resourceType": "Task", "for": {"reference": "Patient/p9"}}, "p9"),
    ({"resourceType": "Encounter", "subject": {"reference": "urn:uuid:p9"}}, "p9"),
    ({"resourceType": "Organization", "id": "o1"}, None),
    ({"resourceType": "Encounter"}, None),
])
def test_member_of(resource, member):
    """member_of reads the element where each type names its patient."""
    assert member == member_of(resource)


@pytest.mark.parametrize(("resource", "period"), [
    ({"resourceType": "Encounter", "period": {"start": "a", "end": "b"}}, ("a", "b")),
    ({"resourceType": "Condition", "recordedDate": "r"}, ("r", None)),
    ({"resourceType": "Condition", "onsetDateTime": "o", "recordedDate": "r"}, ("o", None)),
    ({"resourceType": "Communication", "sent": "s"}, ("s", None)),
    ({"resourceType": "Task", "authoredOn": "t"}, ("t", None)),
    ({"resourceType": "Patient"}, (None, None)),
])
def test_period_of(resource, period):
    """period_of gives the indexed start and end of each type."""
    assert period == period_of(resource)


# --- create_once -------------------------------------------------------------

def test_create_once_twice_returns_the_first_content(store):
    """The same key twice: the second call creates nothing and returns the first content."""
    first = store.create_once([_task("t1")], "key-1")
    second = store.create_once([_task("t1", status="completed")], "key-1")

    assert (([_task("t1")], True), ([_task("t1")], False), 1) == (first, second, store.count("Task"))


def test_create_once_returns_every_resource_of_a_group(store):
    """A group written under one key (a plan and its goals) comes back whole on the retry."""
    group = [_task("t1"), _task("t2"), _task("t3")]
    store.create_once(group, "key-1")

    assert (group, False) == store.create_once(group, "key-1")


def test_create_once_retry_with_fewer_resources_returns_what_was_made(store):
    """A retry under a used key returns everything the key made, whatever the retry passes."""
    group = [_task("t1"), _task("t2"), _task("t3")]
    store.create_once(group, "key-1")

    assert (group, False) == store.create_once([_task("t1")], "key-1")


def test_create_once_is_found_by_idempotency_key(store):
    """by_idempotency_key returns the first resource written under the key, None for an unused key."""
    store.create_once([_task("t1"), _task("t2")], "key-1")

    assert (_task("t1"), _task("t2"), None) == (
        store.by_idempotency_key("key-1"), store.by_idempotency_key("key-1#1"), store.by_idempotency_key("key-2"))


def test_create_once_refuses_invalid_resources_and_writes_nothing(store):
    """If any resource is invalid, nothing of the group is written."""
    with pytest.raises(InvalidResource):
        store.create_once([_task("t1"), _task("t2", status="bogus")], "key-1")

    assert (0, None) == (store.count(), store.by_idempotency_key("key-1"))


def test_put_many_keeps_the_idempotency_key_of_a_created_resource(store):
    """Re-importing a resource that a write tool created does not forget its idempotency key."""
    store.create_once([_task("t1")], "key-1")
    store.put_many([_task("t1", status="completed")])

    assert ([_task("t1", status="completed")], False) == store.create_once([_task("t1")], "key-1")


# --- interrupted transactions --------------------------------------------------

def test_a_transaction_left_open_by_an_interrupted_thread_is_rolled_back_on_its_next_write(store):
    """Temporal cancels a sync activity by raising into its thread; if that leaves the thread's connection
    inside a write transaction, the thread's next write rolls it back and proceeds (and the lock is released)."""
    if store.db.sqlite is None:
        pytest.skip("SQLite's connection per thread; on PostgreSQL the pool rolls a returned connection back")
    conn = store.db.sqlite.connection()
    conn.execute("BEGIN IMMEDIATE")  # as an exception raised right after BEGIN would leave it
    conn.execute("INSERT INTO resources (resource_type, id, content, content_sha256, updated_at)"
                          " VALUES ('Task', 'half-written', '{}', 'x', 'now')")

    assert ["inserted"] == store.put_many([_task("t1")])

    assert store.get("Task", "t1") is not None
    assert store.get("Task", "half-written") is None  # the interrupted write did not land
    other = SqlCareRecordStore(store.db.path)  # another connection can write at once: no lock is held
    assert ["inserted"] == other.put_many([_task("t2")])
    other.close()


def test_an_exception_inside_a_transaction_rolls_it_back(store):
    def interrupted(db):  # noqa: ANN001, ANN202
        db.rows("INSERT INTO resources (resource_type, id, content, content_sha256, updated_at)"
                " VALUES ('Task', 'x', '{}', 'x', 'now')")
        raise KeyboardInterrupt  # a BaseException, as the SDK's cancellation is

    with pytest.raises(KeyboardInterrupt):
        store.db.write(interrupted)
    if store.db.sqlite is not None:
        assert not store.db.sqlite.connection().in_transaction
    assert store.get("Task", "x") is None
