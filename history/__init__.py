"""Operations on workflow histories: export, replay, audit timeline, counterfactual (what-if) guardrails."""
