"""What the Temporal Web UI and ``temporal workflow show`` say about a run (issue 25, Operations): a static
summary and details on the start, a summary on every activity the run schedules, and the run's current details;
all in words from identifiers and codes, never the member's data. On the real dev server and worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle

from runtime.temporal_server import temporal_binary
from tests.conftest import ALWAYS_ASK, StartRun, wait_for_status
from tests.fhir_factory import Member, make_member
from tools.outreach import SendOutreachArgs, SendOutreachInput
from tools.registry import SEND_OUTREACH
from workflows.agent_run import activity_summary


WITHOUT_SUMMARY: set[str] = set()
"""Activities scheduled without a summary: none (MemberOutreachWorkflow.plan schedules the model planner itself,
with the planning budget's timeouts, and gives it the same summary call_tool would)."""


def phi_of(member: Member) -> list[str]:
    """What must never be in a summary or a detail: the member's ids, names, birth date, phone, street."""
    patient = next(r for r in member.resources if r["resourceType"] == "Patient")
    name = patient["name"][0]
    return [member.member_id, member.encounter_id, name["family"], *name["given"], patient["birthDate"],
            patient["telecom"][0]["value"], patient["address"][0]["line"][0]]


async def scheduled_summaries(client: Client, handle: WorkflowHandle) -> list[tuple[str, str | None]]:
    """(activity type, summary) of every ActivityTaskScheduled event of the run's history."""
    history = await handle.fetch_history()
    out = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        summary = None
        if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
            summary = (await client.data_converter.decode([event.user_metadata.summary]))[0]
        out.append((event.activity_task_scheduled_event_attributes.activity_type.name, summary))
    return out


async def current_details(handle: WorkflowHandle) -> str:
    """The run's current details, read as the Web UI reads them (the SDK's built-in metadata query)."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def temporal_cli(client: Client, *args: str) -> str:
    """The ``temporal`` CLI against the test's dev server; its standard output."""
    cmd = [str(temporal_binary()), *args, "--address", client.service_client.config.target_host,
           "--namespace", client.namespace]
    done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=60, check=False)
    assert 0 == done.returncode, done.stderr
    return done.stdout


def decoded_summaries_in_show(output: str) -> list[str]:
    """Summaries in the JSON of ``temporal workflow show``: userMetadata.summary payloads (json/plain)."""
    import base64

    found = []

    def walk(node: Any) -> None:  # noqa: ANN401
        if isinstance(node, dict):
            summary = (node.get("userMetadata") or {}).get("summary")
            if isinstance(summary, dict) and "data" in summary:
                data = summary["data"]
                try:
                    found.append(json.loads(base64.b64decode(data)))
                except (ValueError, TypeError):
                    found.append(data)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(output))
    return found


async def test_a_parked_run_names_its_steps_and_state_without_phi(start_run: StartRun, store, client: Client) -> None:
    """Every activity a parked run scheduled carries a summary naming its tool; the run's static summary names the
    member by pseudonym; its current details give status and pending approvals; none holds the member's data."""
    member = make_member(store)
    handle = await start_run(member, policy=ALWAYS_ASK)
    status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval")

    described = await handle.describe()
    static_summary, static_details = await described.static_summary(), await described.static_details()
    assert f"Post-discharge outreach for member {status.member_pseudonym}" == static_summary
    assert "**program**: post-discharge outreach" in (static_details or "")
    assert "**initiated by**: care-ops-bot" in (static_details or "")

    summaries = await scheduled_summaries(client, handle)
    assert summaries, "the run scheduled no activity"
    unsummarised = {t for t, s in summaries if not s}
    assert unsummarised <= WITHOUT_SUMMARY, f"scheduled without a summary: {unsummarised - WITHOUT_SUMMARY}"
    by_type = {t: s for t, s in summaries}
    assert "tools.lookup_member (read)" == by_type["tools.lookup_member"]
    assert "tools.check_eligibility (read)" == by_type["tools.check_eligibility"]
    assert by_type["ledger.append"].startswith("ledger.append (ledger): ")
    assert "requested" in by_type["ledger.append"]  # the approvals the run asked for

    details = await current_details(handle)
    assert "**status**: awaiting_approval" in details
    assert f"**member**: {status.member_pseudonym}" in details
    assert f"**pending approvals**: {len(status.pending_approvals)} (role " in details
    for action in status.actions:
        assert f"- {action.action_id} {action.tool}: {action.status}" in details

    # `temporal workflow show` prints event types only as text; its JSON has every event's userMetadata.
    shown = await temporal_cli(client, "workflow", "show", "--workflow-id", handle.id, "--output", "json")
    in_show = decoded_summaries_in_show(shown)
    assert by_type["tools.lookup_member"] in in_show  # `temporal workflow show` prints the summaries
    assert by_type["ledger.append"] in in_show
    # `temporal workflow describe` prints the static summary and details as text (current details it does not).
    described_text = await temporal_cli(client, "workflow", "describe", "--workflow-id", handle.id)
    assert f'StaticSummary  "{static_summary}"' in described_text

    words = [static_summary or "", static_details or "", details, *(s or "" for _, s in summaries), *in_show,
             described_text]
    for secret in phi_of(member):
        leaks = [w for w in words if secret.lower() in w.lower()]
        assert not leaks, f"{secret!r} appears in {leaks}"


async def test_a_completed_run_summarises_its_writes(start_run: StartRun, store, client: Client) -> None:
    """A run that completes with no human: each write's summary names its tool, action id and channel; the current
    details end ``completed``; the message text is in none."""
    member = make_member(store)
    handle = await start_run(member)
    result = await handle.result()
    assert "completed" == result.status

    summaries = [s or "" for t, s in await scheduled_summaries(client, handle)]
    for action in result.actions:
        assert any(f"action {action.action_id}" in s and "(write)" in s for s in summaries), action.action_id
    assert any("tools.send_outreach (write); action a2-check-in; via sms; no approval needed" == s
               for s in summaries), summaries
    details = await current_details(handle)
    assert "**status**: completed" in details
    assert "- a2-check-in send_outreach: executed" in details
    for secret in phi_of(member):
        assert not [s for s in [*summaries, details] if secret.lower() in s.lower()], secret


def test_a_summary_never_quotes_the_arguments() -> None:
    """The summary is built from the tool, the action id (the idempotency key's last part) and the channel: a
    message and the member's ids stay in the (encrypted) input."""
    data = SendOutreachInput(
        member_id="pt-secret-1", encounter_id="enc-secret-1", idempotency_key="outreach-mbr-x-1/run-1/a2-check-in",
        arguments=SendOutreachArgs(channel="sms", template="post-discharge-check-in",
                                   message="Hi Jane Canary, born 1950-05-05: how are you?"),
        approved_by="rn-1", contact_window_start="08:00", contact_window_end="21:00")
    summary = activity_summary(SEND_OUTREACH, data, queue="careloom-messages")
    assert "tools.send_outreach (write); action a2-check-in; via sms; approved by a person; on queue " \
           "careloom-messages" == summary
    for secret in ("pt-secret-1", "enc-secret-1", "Jane", "Canary", "1950", "rn-1"):
        assert secret not in summary
