"""Evaluation and governance: the scenario suite, its metrics and reports, and the monitoring report."""
