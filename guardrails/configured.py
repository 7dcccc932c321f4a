"""The guardrail objects a deployment's settings configure: decision signing, and each program's frozen policy
for new runs. Settings hold values; the layer that owns an object builds it from them (here, the guardrails;
:func:`tools.criteria.criteria_for`, :func:`store.connect.configured_database`,
:func:`workflows.agent_run.activity_queues`), and :func:`check_deployment` builds each once at start so a bad
value still stops a process before it serves anything."""

from __future__ import annotations

from datetime import date, time

import holidays

from guardrails.policy import ApprovalRouting, DecisionSignatures, GuardrailPolicy
from guardrails.prior_auth_policy import PriorAuthPolicy
from guardrails.signing import DecisionSigner, parse_public_keys, parse_signing_keys
from runtime.errors import ConfigurationError
from runtime.settings import Settings
from tools.criteria import criteria_for

__all__ = ["check_deployment", "decision_signatures", "outreach_policy", "prior_auth_policy", "signer"]


def signer(settings: Settings) -> DecisionSigner:
    """The API's and CLI's decision signer: CARELOOM_SIGNING_KEYS, or the development key file."""
    if settings.signing_keys is not None:
        return DecisionSigner(parse_signing_keys(settings.signing_keys.get_secret_value()))
    if settings.environment == "production":
        raise ConfigurationError("this host signs decisions but CARELOOM_SIGNING_KEYS is unset; set it "
                                 "(`careloom keys signing-generate KEY_ID`)")
    return DecisionSigner.from_file(settings.state_dir / "signing-keys")


def decision_signatures(settings: Settings) -> DecisionSignatures:
    """The keys new runs accept decisions from (ApprovalRouting.decision_signatures), and a worker verifies
    writes and ledger entries with."""
    keys = (parse_public_keys(settings.decision_keys) if settings.decision_keys
            else signer(settings).public_keys())
    return DecisionSignatures(keys=keys, max_age_seconds=settings.decision_max_age_seconds)


def _routing(settings: Settings) -> ApprovalRouting:
    if settings.approval_routing_file is None:
        return ApprovalRouting()
    path = settings.approval_routing_file
    try:
        return ApprovalRouting.model_validate_json(path.read_text())
    except OSError as err:
        raise ConfigurationError(f"CARELOOM_APPROVAL_ROUTING_FILE: cannot read {path}: {err.strerror}") from None
    except ValueError as err:
        raise ConfigurationError(f"CARELOOM_APPROVAL_ROUTING_FILE: {path} is not a valid approval routing: "
                                 f"{err}") from None


def outreach_policy(settings: Settings, today: date | None = None) -> GuardrailPolicy:
    """The versioned outreach guardrail policy with this deployment's thresholds."""
    year = (today or date.today()).year
    holiday_dates: tuple[date, ...] = ()
    if settings.holiday_calendar == "US":
        holiday_dates = tuple(sorted(holidays.US(years=range(year - 3, year + 2))))
    routing = _routing(settings)
    if "quality_sample_rate" in settings.model_fields_set or "quality_sample_rate" not in routing.model_fields_set:
        routing = routing.model_copy(update={"quality_sample_rate": settings.quality_sample_rate})
    if routing.decision_signatures is None:
        routing = routing.model_copy(update={"decision_signatures": decision_signatures(settings)})
    return GuardrailPolicy(
        approvals=routing,
        min_confidence=settings.min_confidence,
        high_risk_lace=settings.high_risk_lace,
        contact_window_start=time(settings.contact_window_start_hour),
        contact_window_end=(time.max if settings.contact_window_end_hour == 24
                            else time(settings.contact_window_end_hour)),
        holidays=holiday_dates,
    )


def prior_auth_policy(settings: Settings, today: date | None = None) -> PriorAuthPolicy:
    """The versioned prior-authorization policy with this deployment's settings."""
    routing = PriorAuthPolicy().approvals.model_copy(update={
        "quality_sample_rate": settings.quality_sample_rate, "decision_signatures": decision_signatures(settings)})
    return PriorAuthPolicy(auto_approve=settings.um_auto_approve, min_confidence=settings.min_confidence,
                           holidays=outreach_policy(settings, today).holidays, approvals=routing)


def check_deployment(settings: Settings) -> None:
    """Build every object the settings configure once, so a bad value (a routing or criteria file that does not
    parse, malformed keys) stops the process at start with a ConfigurationError naming the setting and the fix,
    never later inside a run. Writes nothing (the development signing key is made when a host first signs)."""
    criteria_for(settings)
    _routing(settings)
    if settings.decision_keys:
        parse_public_keys(settings.decision_keys)
    if settings.signing_keys is not None:
        parse_signing_keys(settings.signing_keys.get_secret_value())
