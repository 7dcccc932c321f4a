"""``careloom eval run``: every case of a suite as real workflow runs, driven to the end by a scripted reviewer.

The stack is a fresh one per evaluation: a temporary state folder (records store, users), the embedded
Temporal dev server on free ports (or the configured cluster, on a task queue of its own) and an in-process
worker. Each case's records are generated (or read from its FHIR files) with ids that carry the evaluation's
nonce, so two evaluations against one cluster never share a run.

A run is *settled* when it has closed, or when it is parked with nothing left for a reviewer (only deferred
actions, which would wait hours for the member's contact window; a care-gap run ``monitoring`` its worked gaps
for new data, which are weeks away): a parked run is terminated once judged. A care-gap closure case starts its
member's run for the period as a campaign does (``start_care_gap`` with the deployment's outreach policy).
Pending approvals are decided as the case's ``review`` says (approve by default), by reviewers named
``eval-<role>-1``; a dual sign-off's second decision comes from ``eval-<role>-2``.

Outreach cases with ``data.start: adt`` send their discharge as an HL7 ADT^A03 over MLLP to a real ADT listener
(started on the evaluation's stack when a case needs one), which maps it and starts the run as in production;
``data.start: bundle`` imports the member's records as a Synthea-style Bundle through the importer first. Each
case's result names its trigger, and the report gives the automation rate per trigger.

The harness's Temporal calls are retried while they fail transiently (``evaluation/rpc_retry.py``); a case
whose calls still fail that way has an ``infrastructure_error``, not an ``error``: a slow machine cannot fail
the safety gate, and the evaluation says which cases it could not judge.

Cases with a ``model`` reply run only on the scripted model server (``--planner scripted``); they run one
at a time after the others, because the model only sees de-identified facts and the server cannot tell
cases apart: each is scripted, run until it settles, and cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from evaluation.oracle import CaseResult, attributes_of, judge
from evaluation.rpc_retry import RpcRetry, infrastructure_error, with_rpc_retries
from evaluation.scenarios import Case, Suite, discharge_time, trigger_of
from evaluation.scripted_model import BEHAVIOURS, ScriptedModelServer, running_model_server
from evaluation.synthetic import (ADT_FACILITY, NOTES, adt_discharge_message, build_pas_bundle, gap_member_resources,
                                  member_resources, synthea_bundle)
from feeds.adt_listener import serve_adt
from feeds.discharges import discharge_of, start_discharges
from feeds.screening import ScreenRules, screen
from guardrails.actions import TERMINAL
from guardrails.approvals import ApprovalDecision, PendingApproval
from guardrails.configured import outreach_policy
from guardrails.configured import prior_auth_policy
from guardrails.configured import signer
from runtime.errors import CareloomError, DecisionRefused
from runtime.settings import Settings
from learning.calibration import install_calibrators, load_calibrators
from store.importer import import_path
from store.ledger import DecisionLedger
from store.sql_records import SqlCareRecordStore
from tools.criteria import criteria_for
from tools.risk import RiskModelScorer
from worker import running_stack
from workflows.agent_run import activity_queues
from workflows.care_gap import CareGapWorkflow
from workflows.care_gap_client import start_care_gap
from workflows.inbox import decide
from workflows.outreach import MemberOutreachWorkflow
from workflows.outreach_client import outreach_workflow_id, start_outreach
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_client import submit_prior_auth

__all__ = ["EvalRun", "EvalUsageError", "Harness", "Planner", "check_planner", "evaluation_settings", "run_suite"]

Planner = Literal["offline", "model", "scripted"]
INITIATOR = "careloom-eval"
_PARKED = {"awaiting_approval", "deferred"}
_WAITING_DONE = TERMINAL | {"deferred"}
_PRIORITY = {"routine": 0, "urgent": 1, "asap": 2, "stat": 3}
_SHORT_MESSAGE = "Your care team is checking in after your hospital stay. Call the number on your card for help."
_PLAN_DATA = {"Coverage", "Consent"}
"""The plan's own records of a member (eligibility, contact preferences): in the store before a hospital's ADT
message or Synthea Bundle arrives, never part of either."""
_ADT_RESENDS = 4  # an AE the listener asks to resend (Temporal busy): resent as an interface engine would


class EvalUsageError(CareloomError):
    """The evaluation cannot start as asked (exit status 2)."""


@dataclass
class EvalRun:
    planner: Planner
    started_at: datetime
    results: list[CaseResult] = field(default_factory=list)
    not_applicable: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0
    policy_ids: list[str] = field(default_factory=list)
    calibrator: str | None = None  # the confidence calibrator the planners applied: version and digest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_planner(base: Settings, planner: Planner) -> None:
    """EvalUsageError when the planner cannot run with these settings."""
    if planner == "model" and not base.model:
        raise EvalUsageError("--planner model needs a configured model: set CARELOOM_MODEL and "
                             "CARELOOM_MODEL_BASE_URL (or use --planner scripted for the local scripted model)")


def evaluation_settings(base: Settings, state_dir: Path, planner: Planner, model_url: str | None) -> Settings:
    """The settings of an evaluation's own stack (everything else as configured)."""
    check_planner(base, planner)
    update: dict[str, Any] = {"state_dir": state_dir, "database_url": None, "users_file": None,
                              "task_queue": f"careloom-eval-{secrets.token_hex(4)}", "worker_metrics_port": None,
                              "model_task_queue": None, "messages_task_queue": None,
                              # its own (empty) registry under the temporary folder: never the deployment's
                              "model_registry_uri": None, "model_artifacts_dir": None}
    if base.embedded:
        update |= {"embedded_port": _free_port(), "embedded_ui_port": _free_port(), "embedded_ui": False}
    if planner == "offline":
        update |= {"model": None}
    elif planner == "scripted":
        update |= {"model": "scripted-model", "model_base_url": model_url,
                   "model_api_key": SecretStr("sk-eval-scripted"), "model_api_version": None,
                   "model_timeout_seconds": 10.0}
    return base.model_copy(update=update)


def _model_server(planner: Planner) -> contextlib.AbstractContextManager[ScriptedModelServer | None]:
    """The scripted model server for ``--planner scripted`` (started and stopped around the run), else none."""
    return running_model_server() if planner == "scripted" else contextlib.nullcontext()


async def run_suite(base: Settings, suite: Suite, planner: Planner, *, concurrency: int = 16,
                    case_timeout: float = 240.0, rpc_retry: RpcRetry = RpcRetry(),
                    progress: Callable[[CaseResult], None] | None = None,
                    scorer: RiskModelScorer | None = None, calibration: Path | None = None) -> EvalRun:
    """Run every applicable case; cases with a model reply need ``planner='scripted'``. ``scorer``: the learned
    risk model the stack's workers serve (the promotion gate's candidate); default the registry's under the
    evaluation's temporary state folder (none: LACE alone). ``calibration``: a confidence-calibrator artifact
    installed in that folder before the stack starts, so every planner activity applies it as a worker would
    (the installed one, or a candidate before it is installed); a calibrator that does not verify raises
    :class:`learning.calibration.CalibrationError` before anything starts."""
    started = datetime.now(UTC).replace(microsecond=0)
    run = EvalRun(planner=planner, started_at=started)
    plain = [c for c in suite.cases if c.model is None]
    scripted = [c for c in suite.cases if c.model is not None]
    if planner != "scripted":
        run.not_applicable = [c.id for c in scripted]
        scripted = []
    clock = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="careloom-eval-") as folder, _model_server(planner) as model:
        settings = evaluation_settings(base, Path(folder), planner, model.url if model else None)
        run.policy_ids = [outreach_policy(settings).policy_id, prior_auth_policy(settings).policy_id]
        if calibration is not None:
            installed = load_calibrators(install_calibrators(calibration, settings.state_dir))
            digest = installed.manifest["calibrator_file"].get("sha256", "")
            run.calibrator = f"{installed.version} ({installed.manifest['method']}, sha256 {digest[:12]}…)"
        async with running_stack(settings, scorer=scorer) as stack:
            listener = None
            if any(c.data.start == "adt" for c in [*plain, *scripted]):
                listener = await serve_adt(adt_listener_settings(settings), stack.client, stack.store,
                                           host="127.0.0.1", port=0)
            try:
                await _run_cases(run, Harness(
                    settings, stack.client, stack.store, started, case_timeout, rpc_retry,
                    adt_address=listener.sockets[0].getsockname()[:2] if listener else None),
                    plain, scripted, model, concurrency, progress)
            finally:
                if listener is not None:
                    listener.close()
                    await listener.wait_closed()
    run.duration_seconds = round(time.monotonic() - clock, 1)
    return run


def adt_listener_settings(settings: Settings) -> Settings:
    """The evaluation's ADT listener: the evaluation's settings (its task queue, policy, time zone), bound to
    loopback, plain MLLP, accepting the evaluation's sending facility only (as production's allow-list would)."""
    return settings.model_copy(update={
        "adt_allowed_facilities": [ADT_FACILITY], "adt_allowed_sources": [], "adt_tls_cert_file": None,
        "adt_tls_key_file": None, "adt_tls_client_ca_file": None})


async def send_mllp(address: tuple[str, int], message: str, *, timeout: float = 60.0) -> tuple[str, str]:
    """Send one HL7 message in an MLLP frame and wait for its ACK: (MSA-1 code, MSA-3 text)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
    try:
        writer.write(b"\x0b" + message.encode("utf-8") + b"\x1c\r")
        await writer.drain()
        data = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    text = data.strip(b"\x0b\x1c\r").decode("utf-8", "replace")
    msa = next((seg.split("|") for seg in text.split("\r") if seg.startswith("MSA|")), None)
    if msa is None or len(msa) < 2:
        raise RuntimeError("the ADT listener's answer holds no MSA segment")
    return msa[1], msa[3] if len(msa) > 3 else ""


async def _run_cases(run: EvalRun, harness: "Harness", plain: list[Case], scripted: list[Case],
                     model: ScriptedModelServer | None, concurrency: int,
                     progress: Callable[[CaseResult], None] | None) -> None:
    """The cases on one stack: the plain ones concurrently (those Temporal starved once more, alone), then
    the scripted ones one at a time."""
    limit = asyncio.Semaphore(concurrency)

    async def one(case: Case) -> CaseResult:
        async with limit:
            result = await harness.run_case(case)
        if progress:
            progress(result)
        return result

    run.results = list(await asyncio.gather(*(one(c) for c in plain)))
    # Cases Temporal did not answer for under full concurrency get one more go, alone: the load that
    # starved them was mostly the evaluation's own. Their runs exist already (same ids): it goes on.
    for index, (case, result) in enumerate(zip(plain, run.results, strict=True)):
        if result.infrastructure_error is not None:
            run.results[index] = await harness.run_case(case)
    for case in scripted:
        assert model is not None and case.model is not None
        model.script(*BEHAVIOURS[case.model.reply])
        try:
            result = await harness.run_case(case)
        finally:
            model.clear()
        if progress:
            progress(result)
        run.results.append(result)


class Harness:
    """Runs one case at a time to the end against a stack (:func:`run_suite` builds both)."""

    def __init__(self, settings: Settings, client: Client, store: SqlCareRecordStore, started: datetime,
                 timeout: float, rpc_retry: RpcRetry = RpcRetry(), *,
                 adt_address: tuple[str, int] | None = None) -> None:
        self.settings, self.client, self.store = settings, client, store
        self.started, self.timeout, self.rpc_retry = started, timeout, rpc_retry
        self.adt_address = adt_address
        self.nonce = secrets.token_hex(3)
        self.salt = settings.pseudonym_salt.get_secret_value()
        self.signer = signer(settings)
        self._shown: dict[str, list[str]] = {}  # case id → approval items that showed forbidden text

    async def run_case(self, case: Case) -> CaseResult:
        result = CaseResult(id=case.id, program=case.program, title=case.title, tags=list(case.tags),
                            trigger=trigger_of(case))
        settled: list[tuple[str, Any, WorkflowExecutionStatus | None]] = []
        reviews: dict[str, str] = {}
        try:
            resources, start = self._records(case)
            result.attributes = attributes_of(resources, self.started.date())
            runs = await self._rpc(start)
            result.runs = len(runs)
            result.workflow_id = runs[0][0] if runs else None
            for number, (workflow_id, query) in enumerate(runs, start=1):
                prefix = f"{number}:" if len(runs) > 1 else ""
                # The whole drive is bounded too: a run that keeps asking (or a call that hangs) is an error.
                status, closed = await asyncio.wait_for(
                    self._drive(case, workflow_id, query, reviews, prefix), self.timeout + 30)
                settled.append((workflow_id, status, closed))
        except Exception as err:  # noqa: BLE001 - one case's failure is a result, not the evaluation's end
            transient = infrastructure_error(err)
            if transient is not None:  # Temporal did not answer in time, retries included: not the case's fault
                result.infrastructure_error = (f"{type(transient).__name__}: {transient} (after "
                                               f"{self.rpc_retry.attempts} attempts)")
            else:
                result.error = f"{type(err).__name__}: {err}"
            return result
        statuses = [status for _, status, _ in settled]
        if statuses:
            result.status, result.planner = statuses[0].status, statuses[0].planner
            result.lace = getattr(statuses[0], "lace", None)
            result.determination = getattr(statuses[0], "determination", None)
            result.open_gaps = getattr(statuses[0], "open_gaps", None)
        else:
            result.status = "not_started"
        for workflow_id, _, closed in settled:
            if closed == WorkflowExecutionStatus.FAILED:
                # Every run ends with an outcome or a person told: a failed run must have given someone a Task.
                told = [e for e in DecisionLedger(self.store.db).entries(workflow_id)
                        if e.event == "run_failed" and "follow-up Task/" in (e.reason or "")]
                result.silent_failure = result.silent_failure or not told
        leaks, result.downgraded = self._check_written(case, statuses)
        result.leaks = [*self._shown.pop(case.id, []), *leaks]
        result.actions, result.problems = judge(case, statuses, reviews)
        if result.leaks:
            result.problems.append(f"forbidden text in {', '.join(result.leaks)}")
        if result.downgraded:
            result.problems.append(f"TCM Task below {case.expect.outcome.task_priority}: "
                                   f"{', '.join(result.downgraded)}")
        result.missing_kinds = sorted(set(case.expect.actions) - {a.kind for a in result.actions})
        result.outcome_ok = not result.problems
        return result

    def _check_written(self, case: Case, statuses: list[Any]) -> tuple[list[str], list[str]]:  # noqa: ANN401
        """(records holding text the case forbids, TCM Tasks below its priority), read back from the store."""
        want = case.expect.outcome
        leaks: list[str] = []
        downgraded: list[str] = []
        for number, status in enumerate(statuses, start=1):
            prefix = f"{number}:" if len(statuses) > 1 else ""
            for action in status.actions:
                if not action.reference or "/" not in action.reference:
                    continue
                rtype, rid = action.reference.split("/", 1)
                record = self.store.get(rtype, rid)
                if record is None:
                    continue
                words = _written_words(record)
                if want.not_written and _holds(words, want.not_written):
                    leaks.append(f"{rtype} written by {prefix}{action.action_id}")
                elif (want.not_in_messages and rtype == "Communication"
                      and _holds(words, want.not_in_messages)):
                    leaks.append(f"{rtype} (a message to the member) written by {prefix}{action.action_id}")
                kind = ((record.get("code") or {}).get("coding") or [{}])[0].get("code")
                if (want.task_priority and rtype == "Task" and kind == "tcm-interactive-contact"
                        and _PRIORITY[record.get("priority", "routine")] < _PRIORITY[want.task_priority]):
                    downgraded.append(f"{prefix}{action.action_id} {record.get('priority')}")
        return leaks, downgraded

    # --- data and start --------------------------------------------------------------
    def _records(self, case: Case) -> tuple[list[dict[str, Any]], Callable[[], Any]]:
        if case.data.member is None:
            return self._file_records(case)
        if case.program == "care-gap-closure":
            return self._gap_records(case)
        spec, stay = case.data.member, case.data.member.stay
        tag = f"ev{self.nonce}-{case.data.seed}-{case.id}"
        discharged = discharge_time(stay.discharged, self.started) if stay.discharged else None
        member_id, encounter_id, resources = member_resources(
            tag, los_days=stay.los_days, discharged_at=discharged, still_admitted=stay.discharged is None,
            codes=stay.codes, ed_visits=stay.ed_visits, state=spec.state, priority=stay.priority,
            phone_use=None if spec.phone == "none" else spec.phone, email=spec.email, opted_out=spec.opted_out,
            deceased=spec.deceased, coverage_status=spec.coverage_status, coverage_type=spec.plan,
            coverage_end=spec.coverage_end.isoformat(), admit_source=stay.admit_source, sex=spec.sex,
            birth_date=spec.birth_date, language=spec.language, earlier_stays=spec.earlier_stays)
        if case.program == "post-discharge-outreach" and case.data.start == "adt":
            # The hospital's feed creates the stay: everything else (the member, the plan's coverage, earlier
            # visits and conditions) is already on file, as in production.
            self.store.put_many([r for r in resources if not (r.get("resourceType") == "Encounter"
                                                               and r["id"] == encounter_id)])
            stay_record = next(r for r in resources if r.get("resourceType") == "Encounter" and r["id"] == encounter_id)
            return resources, lambda: self._start_adt(stay_record, member_id)
        if case.program == "post-discharge-outreach" and case.data.start == "bundle":
            return resources, self._import_bundle(resources, tag)
        self.store.put_many(resources)
        if case.program == "post-discharge-outreach":
            if case.data.start == "import":
                return resources, lambda: self._start_imported(resources)
            return resources, lambda: self._start_outreach(member_id, encounter_id)
        request = case.data.request
        assert request is not None
        bundle = build_pas_bundle(
            patient=copy.deepcopy(resources[0]), coverage=copy.deepcopy(resources[1]), tag=tag,
            service_code=request.service_code, extra_codes=request.extra_codes, quantity=request.quantity,
            priority=request.priority, notes=NOTES[request.notes])
        return resources, lambda: self._submit(bundle)

    def _gap_records(self, case: Case) -> tuple[list[dict[str, Any]], Callable[[], Any]]:
        """The member as the measures see them, and the start of their run for the case's period."""
        spec, gaps = case.data.member, case.data.gaps
        assert spec is not None and gaps is not None
        start, end = gaps.period_dates(self.started.date())
        member_id, resources = gap_member_resources(
            f"ev{self.nonce}-{case.data.seed}-{case.id}", period_start=start, conditions=gaps.conditions,
            office_visit=gaps.office_visit, hba1c=gaps.hba1c, blood_pressure=gaps.blood_pressure,
            mammogram=gaps.mammogram, state=spec.state, phone_use=None if spec.phone == "none" else spec.phone,
            email=spec.email, opted_out=spec.opted_out, deceased=spec.deceased, coverage_status=spec.coverage_status,
            coverage_type=spec.plan, coverage_end=spec.coverage_end.isoformat(), sex=spec.sex,
            birth_date=spec.birth_date, language=spec.language)
        self.store.put_many(resources)
        return resources, lambda: self._start_care_gap(member_id, start, end, list(gaps.measures))

    def _file_records(self, case: Case) -> tuple[list[dict[str, Any]], Callable[[], Any]]:
        assert case.source is not None
        resources: list[dict[str, Any]] = []
        request: dict[str, Any] | None = None
        for name in case.data.files:
            document = json.loads((case.source.parent / name).read_text(encoding="utf-8"))
            if document.get("resourceType") == "Bundle":
                entries = [e["resource"] for e in document.get("entry", []) if "resource" in e]
                if request is None and any(r.get("resourceType") == "Claim" for r in entries):
                    request = document
                    resources.extend(entries)
                    continue
                resources.extend(entries)
            else:
                resources.append(document)
        if case.program == "prior-auth-triage":
            if request is None:
                raise ValueError("data.files holds no Bundle with a Claim: a prior-auth-triage case needs one")
            self.store.put_many([r for r in resources if r.get("resourceType") in ("Patient", "Coverage")])
            return resources, lambda: self._submit(request)
        self.store.put_many(resources)
        if case.data.start == "import":
            return resources, lambda: self._start_imported(resources)
        member = next((r["id"] for r in resources if r.get("resourceType") == "Patient"), None)
        stays = [r for r in resources if r.get("resourceType") == "Encounter"
                 and (r.get("class") or {}).get("code") == "IMP"]
        if member is None or not stays:
            raise ValueError("data.files needs a Patient and an inpatient (IMP) Encounter")
        return resources, lambda: self._start_outreach(member, stays[0]["id"])

    async def _rpc(self, call: Callable[[], Any]) -> Any:  # noqa: ANN401
        """A harness call to Temporal, retried while it fails transiently (every one here is idempotent)."""
        return await with_rpc_retries(call, self.rpc_retry)

    async def _start_outreach(self, member_id: str, encounter_id: str) -> list[tuple[str, Any]]:
        handle, _ = await start_outreach(
            self.client, member_id=member_id, encounter_id=encounter_id, policy=outreach_policy(self.settings),
            task_queue=self.settings.task_queue, initiated_by=INITIATOR, salt=self.salt,
            tool_attempts=self.settings.tool_attempts, queues=activity_queues(self.settings))
        return [(handle.id, MemberOutreachWorkflow.status)]

    async def _start_imported(self, resources: list[dict[str, Any]]) -> list[tuple[str, Any]]:
        """Every discharge among the case's Encounters, started the way ``careloom import --start-outreach`` does."""
        policy = outreach_policy(self.settings)
        found = [d for r in resources if r.get("resourceType") == "Encounter"
                 and (d := discharge_of(r, policy, self.settings.plan_time_zone)) is not None]
        # The import's screen (lookback, implausible stays, a deceased member's earlier stays, coverage ended
        # since): the discharges it holds back start no run, as with `careloom import --start-outreach`.
        screened = screen(self.store, found, ScreenRules.from_settings(self.settings, policy=policy),
                          now=datetime.now(UTC))
        report = await start_discharges(self.client, self.settings, screened.start, trigger="import",
                                        policy=policy, initiated_by=INITIATOR, held=screened.held)
        if report.failed:
            raise RuntimeError(f"import start refused: {report.failed[0][1]}")
        return [(workflow_id, MemberOutreachWorkflow.status) for workflow_id in [*report.started, *report.existing]]

    def _import_bundle(self, resources: list[dict[str, Any]], tag: str) -> Callable[[], Any]:
        """The plan's records stored; the member's clinical records written as a Synthea-style Bundle and imported
        by the importer (``careloom import``); the start: the imported discharges, as ``--start-outreach``."""
        self.store.put_many([r for r in resources if r.get("resourceType") in _PLAN_DATA])
        folder = self.settings.state_dir / "eval-bundles"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{tag}.json"
        path.write_text(json.dumps(synthea_bundle([r for r in resources if r.get("resourceType") not in _PLAN_DATA],
                                                  tag)), encoding="utf-8")
        report = import_path(self.store, path)
        if report.skipped:
            raise ValueError(f"the importer skipped {report.skipped} entries of the case's Bundle: "
                             f"{report.problems[0].message}")
        imported = [e for i in report.encounters if (e := self.store.get("Encounter", i)) is not None]
        return lambda: self._start_imported(imported)

    async def _start_adt(self, stay: dict[str, Any], member_id: str) -> list[tuple[str, Any]]:
        """The stay's ADT^A03 over MLLP to the evaluation's listener, which maps it, stores the Encounter and starts
        the run (or holds it back, answering AA with the reason): the run's id, or none."""
        if self.adt_address is None:
            raise RuntimeError("no ADT listener is running for this evaluation")
        message = adt_discharge_message(stay, control_id=secrets.token_hex(10), sent_at=datetime.now(UTC))
        for attempt in range(_ADT_RESENDS):
            code, reason = await send_mllp(self.adt_address, message)
            if code == "AA":
                break
            if code != "AE" or "resend" not in reason or attempt == _ADT_RESENDS - 1:
                raise RuntimeError(f"the ADT listener answered {code}: {reason}")
            await asyncio.sleep(1.0 + attempt)
        if reason.startswith(("stored; no outreach started", "not an inpatient discharge")):
            return []
        return [(outreach_workflow_id(member_id, stay["id"], self.salt), MemberOutreachWorkflow.status)]

    async def _start_care_gap(self, member_id: str, start: date, end: date,
                              measure_ids: list[str]) -> list[tuple[str, Any]]:
        """The member's care-gap run for the period, started as a campaign starts it (the deployment's policy)."""
        handle, _ = await start_care_gap(
            self.client, member_id=member_id, period_start=start, period_end=end, measure_ids=measure_ids,
            policy=outreach_policy(self.settings), task_queue=self.settings.task_queue, salt=self.salt,
            initiated_by=INITIATOR, tool_attempts=self.settings.tool_attempts,
            queues=activity_queues(self.settings))
        return [(handle.id, CareGapWorkflow.status)]

    async def _submit(self, bundle: dict[str, Any]) -> list[tuple[str, Any]]:
        handle, _, _ = await submit_prior_auth(
            self.client, self.store, bundle, criteria=criteria_for(self.settings),
            policy=prior_auth_policy(self.settings), task_queue=self.settings.task_queue, salt=self.salt,
            initiated_by=INITIATOR, tool_attempts=self.settings.tool_attempts,
            queues=activity_queues(self.settings))
        return [(handle.id, PriorAuthWorkflow.status)]

    # --- driving a run to the end ---------------------------------------------------------
    async def _drive(self, case: Case, workflow_id: str, query: Any, reviews: dict[str, str],  # noqa: ANN401
                     prefix: str = "") -> tuple[Any, WorkflowExecutionStatus | None]:
        """Drive one run until it settles: (its last status, how it closed or None when parked); the
        decisions given go into ``reviews`` under ``prefix`` + action id."""
        handle = self.client.get_workflow_handle(workflow_id)
        deadline = time.monotonic() + self.timeout
        rpc = timedelta(seconds=15)
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {workflow_id} did not settle within {self.timeout:.0f} s")
            described = await self._rpc(lambda: handle.describe(rpc_timeout=rpc))
            status = await self._rpc(lambda: handle.query(query, rpc_timeout=rpc))
            if described.status != WorkflowExecutionStatus.RUNNING:
                return status, described.status
            if status.status in _PARKED and status.pending_approvals:
                for item in status.pending_approvals:
                    await self._review(case, workflow_id, item, reviews, prefix)
                await asyncio.sleep(0.05)
                continue
            if status.status == "deferred" and all(a.status in _WAITING_DONE for a in status.actions):
                await self._terminate(handle)  # only deferred actions left: hours away
                return status, None
            if status.status == "awaiting_documentation":
                await self._terminate(handle)  # pended: the provider's answer is days away
                return status, None
            if status.status == "monitoring" and all(a.status in TERMINAL for a in status.actions):
                await self._terminate(handle)  # a care-gap run worked its gaps: new data are weeks away
                return status, None
            await asyncio.sleep(0.25)

    async def _terminate(self, handle: WorkflowHandle) -> None:
        attempts = 0

        async def once() -> None:
            nonlocal attempts
            attempts += 1
            try:
                await handle.terminate("evaluation case judged")
            except RPCError as err:
                # A retry after a terminate that went through but whose answer was lost: already closed.
                if not (attempts > 1 and err.status == RPCStatusCode.NOT_FOUND):
                    raise

        await self._rpc(once)

    async def _review(self, case: Case, workflow_id: str, item: PendingApproval, reviews: dict[str, str],
                      prefix: str = "") -> None:
        kind = item.arguments.tool
        if _holds(_written_words(item.arguments.model_dump(mode="json")), case.expect.outcome.not_written):
            place = f"approval item {prefix}{item.action_id}"
            if place not in self._shown.setdefault(case.id, []):
                self._shown[case.id].append(place)
        choice = case.review.get(kind, "approve")
        if item.signoffs:
            choice = "reject" if reviews.get(prefix + item.action_id) == "reject" else "approve"
        reviews.setdefault(prefix + item.action_id, choice)
        decision = ApprovalDecision(
            approval_id=item.approval_id, digest=item.digest, decision=choice,  # type: ignore[arg-type]
            approver=f"eval-{item.required_role}-{len(item.signoffs) + 1}", role=item.required_role,
            reason="evaluation reviewer: rejected as the scenario says" if choice == "reject" else None,
            arguments=_edited(item.arguments) if choice == "edit" else None)
        try:
            await self._rpc(lambda: decide(self.client, workflow_id, decision, signer=self.signer))
        except DecisionRefused as err:
            if err.code != "not_found":  # decided meanwhile (expired, or our own retry)
                raise


_KEYS_NOT_WORDS = frozenset({"id", "reference", "system", "url", "fullUrl", "identifier", "meta"})
"""Keys whose values are identifiers, not words anyone reads: a hex id may hold "a1c" by chance."""


def _written_words(record: Any) -> str:  # noqa: ANN401
    """Every string a person could read in ``record`` (texts, codes, displays, dates), without its identifiers."""
    if isinstance(record, dict):
        return "\n".join(_written_words(v) for k, v in record.items()
                         if k not in _KEYS_NOT_WORDS and not k.endswith(("_id", "_key")))
    if isinstance(record, list):
        return "\n".join(_written_words(v) for v in record)
    return record if isinstance(record, str) else ""


def _holds(text: str, forbidden: tuple[str, ...]) -> bool:
    """Whether ``text`` (:func:`_written_words`) holds any forbidden string, in any case."""
    lowered = text.lower()
    return any(f.lower() in lowered for f in forbidden)


def _edited(arguments: Any) -> Any:  # noqa: ANN401
    """The reviewer's edit: the same action with its text reworded (what a supervisor changes most)."""
    if hasattr(arguments, "message"):
        return arguments.model_copy(update={"message": _SHORT_MESSAGE})
    for name in ("title", "description", "explanation"):
        if hasattr(arguments, name):
            return arguments.model_copy(update={name: f"{getattr(arguments, name)} (reviewed)"})
    return arguments

