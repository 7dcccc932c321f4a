"""One contact budget per member across programs, enforced where the message is written (from the records store):
a care-gap reminder waits when careloom contacted the member today or `max_contacts_per_week` times in 7 days (in
any program, prior-authorization notices included); post-discharge outreach is never held back by a reminder and
never folds into one."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from temporalio.exceptions import ApplicationError

from tests.fhir_factory import make_member
from tools.errors import CONTACT_BUDGET_SPENT
from tools.outreach import SendOutreachArgs, SendOutreachInput, member_contacts, send_outreach

NOON_NY = datetime(2026, 6, 11, 16, 0, tzinfo=UTC)  # 12:00 EDT
GAP = "care-gap closure"


def _message(member, key: str, *, program: str | None = None, cap: int = 3) -> SendOutreachInput:  # noqa: ANN001
    template = "follow-up-reminder" if program else "post-discharge-check-in"
    return SendOutreachInput(
        member_id=member.member_id, encounter_id=member.encounter_id, idempotency_key=key,
        arguments=SendOutreachArgs(channel="sms", template=template, message="Your health plan: a message for you."),
        contact_window_start=time(8), contact_window_end=time(21), program=program, max_contacts_per_week=cap)


def _spent(store, data, now) -> str:  # noqa: ANN001
    before = store.count("Communication")
    with pytest.raises(ApplicationError) as refused:
        send_outreach(store, data, now=now)
    assert (CONTACT_BUDGET_SPENT, True, before) == (refused.value.type, refused.value.non_retryable,
                                                    store.count("Communication"))
    return refused.value.message


def test_a_reminder_waits_for_a_day_without_contact(store) -> None:
    """Outreach contacted the member this morning: the gap reminder waits; tomorrow it goes."""
    member = make_member(store)
    send_outreach(store, _message(member, "outreach-1"), now=NOON_NY - timedelta(hours=2))
    assert "already contacted today" in _spent(store, _message(member, "gap-1", program=GAP), NOON_NY)
    sent = send_outreach(store, _message(member, "gap-1", program=GAP), now=NOON_NY + timedelta(days=1))
    assert sent.created and sent.folded_into is None


def test_outreach_is_never_held_back_by_a_reminder(store) -> None:
    """A reminder went out this morning; the post-discharge check-in still goes, as its own message (not folded
    into the reminder: a different program's message is not the check-in)."""
    member = make_member(store)
    reminder = send_outreach(store, _message(member, "gap-2", program=GAP), now=NOON_NY - timedelta(hours=2))
    check_in = send_outreach(store, _message(member, "outreach-2"), now=NOON_NY)
    assert check_in.created and check_in.folded_into is None and check_in.reference != reminder.reference


def test_the_weekly_cap_counts_every_program_and_notices(store) -> None:
    """Two messages and a prior-authorization notice in the last 7 days (cap 3): the reminder waits; with the
    oldest 8 days back it goes."""
    member = make_member(store)
    send_outreach(store, _message(member, "outreach-3"), now=NOON_NY - timedelta(days=6))
    send_outreach(store, _message(member, "gap-3a", program=GAP), now=NOON_NY - timedelta(days=3))
    notice = {"resourceType": "Communication", "id": f"notice-{member.member_id}", "status": "in-progress",
              "category": [{"coding": [{"system": "urn:careloom:notice-kind", "code": "prior-auth-deny"}]}],
              "subject": {"reference": f"Patient/{member.member_id}"},
              "sent": (NOON_NY - timedelta(days=2)).isoformat(), "payload": [{"contentString": "Notice"}]}
    store.put_many([notice])
    assert 3 == len(member_contacts(store, member.member_id, NOON_NY - timedelta(days=7)))
    assert "3 time(s) in the last 7 days (the plan's cap is 3)" in _spent(
        store, _message(member, "gap-3b", program=GAP), NOON_NY)
    # A bigger cap lets it go; a week later the oldest contact no longer counts either.
    assert send_outreach(store, _message(member, "gap-3b", program=GAP, cap=4), now=NOON_NY).created
    assert send_outreach(store, _message(member, "gap-3c", program=GAP), now=NOON_NY + timedelta(days=5)).created


def test_the_budget_check_and_the_write_are_one_step_per_member(store) -> None:  # noqa: ANN001
    """Another host writes a contact for the member while this reminder is on its way: the reminder's early check
    (outside the write) still finds room, but the write waits for the member's lock (PostgreSQL: an advisory
    lock; SQLite: the single writer), checks again inside its transaction, sees the new contact and refuses.
    Nothing half-written: only the other host's message is there."""
    import threading

    from store.sql_records import SqlCareRecordStore, _params
    from tools.outreach import build_communication, contact_day_key, contact_lock

    assert isinstance(store, SqlCareRecordStore)
    member = make_member(store)
    other = build_communication(_message(member, "outreach-other-host"), NOON_NY - timedelta(minutes=1))
    entered, release = threading.Event(), threading.Event()

    def other_host(db) -> None:  # noqa: ANN001 - the other host's write transaction, held open
        if store.db.dialect == "postgresql":
            db.rows("SELECT pg_advisory_xact_lock(hashtext(:k))", {"k": contact_lock(member.member_id)})
        db.rows("INSERT INTO resources (resource_type, id, member_id, date_start, date_end, idempotency_key, "
                "content, content_sha256, updated_at) VALUES (:t, :i, :m, :s, :e, :k, :c, :h, :now)",
                {**_params(store._row(other)), "now": NOON_NY.isoformat(),
                 "k": contact_day_key(member.member_id, NOON_NY.date())})
        entered.set()
        assert release.wait(20)

    holder = threading.Thread(target=store.db.write, args=(other_host,))
    holder.start()
    assert entered.wait(20)
    outcome: dict[str, object] = {}

    def reminder() -> None:
        try:
            outcome["result"] = send_outreach(store, _message(member, "gap-race", program=GAP), now=NOON_NY)
        except ApplicationError as err:
            outcome["refused"] = err

    sender = threading.Thread(target=reminder)
    sender.start()
    sender.join(1.0)
    assert sender.is_alive()  # waiting for the member's lock, not writing past it
    release.set()
    holder.join(20)
    sender.join(30)
    refused = outcome.get("refused")
    assert isinstance(refused, ApplicationError) and refused.type == CONTACT_BUDGET_SPENT, outcome
    assert "already contacted today" in refused.message
    assert [c["id"] for c in store.find_for_member("Communication", member.member_id)] == [other["id"]]
