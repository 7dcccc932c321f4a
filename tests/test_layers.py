"""The layer order every import follows (issue 22): the import-linter contracts pass, worker.py sits between
feeds and history, the lower layers import no careloom module inside a function, and a layering violation
planted in a scratch copy fails the check with the offending import named."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("runtime", "store", "tools", "learning", "guardrails", "agents", "workflows", "feeds", "history",
            "evaluation", "bench", "api", "cli")
BELOW_WORKER = ("runtime", "store", "tools", "learning", "guardrails", "agents", "workflows", "feeds")
ABOVE_WORKER = ("history", "evaluation", "bench", "api", "cli")
LEAF_LAYERS = ("runtime", "store", "tools", "guardrails")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)


def _imports(path: Path) -> list[tuple[ast.AST, str, bool]]:
    """(node, imported module, at module level) for every import of a file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    top |= {id(n) for node in tree.body if isinstance(node, (ast.If, ast.With)) for n in node.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node, node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            found.extend((node, alias.name, id(node) in top) for alias in node.names)
    return found


def test_the_import_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "careloom layers, top to bottom KEPT" in result.stdout
    assert "no import circles inside a layer KEPT" in result.stdout


def test_worker_sits_between_feeds_and_history() -> None:
    upward = [m for _, m, _ in _imports(ROOT / "worker.py") if m.split(".")[0] in ABOVE_WORKER]
    assert upward == [], f"worker.py imports from a layer above it: {upward}"
    importers = [f"{path.relative_to(ROOT)}:{node.lineno}" for package in BELOW_WORKER
                 for path in sorted((ROOT / package).glob("*.py"))
                 for node, module, _ in _imports(path) if module.split(".")[0] == "worker"]
    assert importers == [], f"modules below worker.py import it: {importers}"


def test_lower_layers_import_careloom_modules_at_module_level_only() -> None:
    """A function-level import hides a dependency from the reader (and closed the import circles of issue 22)."""
    hidden = [f"{path.relative_to(ROOT)}:{node.lineno} {module}" for package in LEAF_LAYERS
              for path in sorted((ROOT / package).glob("*.py"))
              for node, module, top in _imports(path)
              if not top and module.split(".")[0] in (*PACKAGES, "worker")]
    assert hidden == [], "function-level imports of careloom modules: " + "; ".join(hidden)


@pytest.mark.parametrize(("where", "planted", "named"), [
    ("runtime/errors.py", "from cli.main import app as _planted\n", "runtime.errors -> cli.main"),
    ("tools/writes.py", "from guardrails.policy import Role as _planted\n", "tools.writes -> guardrails.policy"),
])
def test_a_planted_upward_import_fails_the_check_and_is_named(tmp_path: Path, where: str, planted: str,
                                                               named: str) -> None:
    scratch = tmp_path / "careloom"
    scratch.mkdir()
    shutil.copy(ROOT / "pyproject.toml", scratch)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, scratch / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = scratch / where
    target.write_text(target.read_text() + planted)
    result = _lint(scratch)
    assert result.returncode != 0
    assert "careloom layers, top to bottom BROKEN" in result.stdout
    assert named in result.stdout, result.stdout


def test_workflow_code_imports_only_the_passed_through_workflow_side() -> None:
    """Importing the programs' workflows (what the sandbox does for every run) imports no careloom module that
    does I/O and no database or model client, and every careloom module it imports is passed through (built
    once per process), but the workflow modules themselves."""
    probe = ("import json, sys; import workflows.outreach, workflows.prior_auth, workflows.care_gap; "
             "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    imported = set(__import__("json").loads(result.stdout))
    from runtime.plugin import PASSTHROUGH_MODULES

    ours = {m for m in imported if m.split(".")[0] in PACKAGES and "." in m}
    workflow_modules = {"workflows.outreach", "workflows.prior_auth", "workflows.care_gap"}
    not_passed = sorted(m for m in ours - workflow_modules
                        if not any(m == p or m.startswith(p + ".") for p in PASSTHROUGH_MODULES))
    assert not_passed == [], f"workflow code imports careloom modules the sandbox re-imports per run: {not_passed}"
    io = sorted(imported & {"sqlalchemy", "psycopg", "sqlite3", "openai", "store.database", "store.sql_records",
                            "store.ledger", "tools.activities", "tools.prior_auth_activities", "tools.pas_request",
                            "runtime.temporal_client", "runtime.settings", "workflows.ledger_activity",
                            "tools.care_gaps", "tools.quality_measures", "cql_sdk", "pg8000"})
    assert io == [], f"workflow code imports modules that do I/O: {io}"
