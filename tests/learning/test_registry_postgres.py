"""The model registry on PostgreSQL (``CARELOOM_MODEL_REGISTRY_URI``) and a shared artifacts folder
(``CARELOOM_MODEL_ARTIFACTS_DIR``): register, promote behind a gate, shadow, read by alias and verify on a real
server database (both installed drivers); a worker's view when the server cannot be reached; the settings' checks
and the default (the SQLite file under the state folder, as before)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from learning.model import MANIFEST_FILE
from learning.registry import (CHALLENGER, CHAMPION, REGISTRY_TABLES, GateResult, ModelRegistry, RegisteredVersion,
                               RegistryError)
from learning.serving import scorer_from_registry
from runtime.errors import ConfigurationError
from runtime.settings import Settings, registry_sqlalchemy_url
from tests.databases import ADMIN_URL, fresh_postgres_url, postgres_available
from tests.learning.test_registry import trained_artifacts
from tests.net import free_port

needs_postgres = pytest.mark.skipif(
    not postgres_available(),
    reason=f"no PostgreSQL at {make_url(ADMIN_URL).render_as_string(hide_password=True)} (CI has one at "
           "127.0.0.1:5432; CARELOOM_TEST_DATABASE_URL names another)")

NAME = "readmission-30d-hgb"
SECRET = "s3cret-registry-pw"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return trained_artifacts(tmp_path_factory.mktemp("pg-registry-artifacts"), ("pg-1", "pg-2"))


def passing(_: RegisteredVersion) -> GateResult:
    return GateResult(True, "test gate: passed")


def _tables(url: str) -> set[str]:
    engine = create_engine(make_url(registry_sqlalchemy_url(url)), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CARELOOM_MODEL_REGISTRY_URI", "CARELOOM_MODEL_ARTIFACTS_DIR", "CARELOOM_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


# --- on a real PostgreSQL database ------------------------------------------------------------------------------

@needs_postgres
@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+pg8000"])
def test_register_promote_and_read_by_alias_on_postgresql(artifacts: list[Path], tmp_path: Path,
                                                          scheme: str) -> None:
    url = fresh_postgres_url().replace("postgresql://", f"{scheme}://", 1)
    shared = tmp_path / "shared-models"
    registrar = ModelRegistry(tmp_path / "cli-host", uri=url, artifacts=shared)
    driver = {"postgresql": "postgresql+psycopg", "postgresql+pg8000": "postgresql+pg8000"}[scheme]
    assert registrar.path is None and registrar.uri.startswith(f"{driver}://")
    assert not registrar.exists() and "careloom model register" in (registrar.absence or "")
    assert registrar.versions(NAME) == [] and not REGISTRY_TABLES & _tables(url)  # checking created nothing

    first = registrar.register(artifacts[0])
    second = registrar.register(artifacts[1])
    assert REGISTRY_TABLES <= _tables(url) and not (tmp_path / "cli-host" / "mlflow.db").exists()
    assert (first.version, first.label, second.version) == ("1", "pg-1", "2")
    assert first.source.is_relative_to(shared) and (first.source / MANIFEST_FILE).is_file()
    with pytest.raises(RegistryError, match="already readmission-30d-hgb version 1"):
        registrar.register(artifacts[0])

    promoted, gate = registrar.promote(NAME, "1", gate=passing)
    assert gate is not None and gate.passed and promoted.aliases == (CHAMPION,)
    assert promoted.tags["careloom.gate"] == "passed" and promoted.tags["careloom.gate_summary"] == "test gate: passed"
    shadowed, no_gate = registrar.promote(NAME, "2", shadow=True)
    assert no_gate is None and shadowed.aliases == (CHALLENGER,)

    # Another host (its own state folder, no mlflow.db) reads the same registry through its settings.
    worker = ModelRegistry.from_settings(Settings(state_dir=tmp_path / "worker-host", model_registry_uri=url,
                                                  model_artifacts_dir=shared, _env_file=None))
    assert worker.exists() and worker.absence is None
    champion = worker.by_alias(NAME, CHAMPION)
    assert champion is not None and (champion.version, champion.digest) == ("1", first.digest)
    assert worker.verify(champion).manifest["version"] == "pg-1"
    assert worker.by_alias(NAME, CHALLENGER).version == "2"  # type: ignore[union-attr]
    assert worker.by_alias("no-such-model", CHAMPION) is None
    scorer = scorer_from_registry(tmp_path / "worker-host", registry=worker)  # what a worker builds at start
    assert scorer.champion is not None and scorer.champion.registered.version == "1"
    assert scorer.challenger is not None and scorer.challenger.registered.version == "2"
    assert not (tmp_path / "worker-host" / "mlflow.db").exists()


@needs_postgres
def test_a_database_without_the_registry_tables_is_no_registry_and_checking_creates_none(tmp_path: Path) -> None:
    url = fresh_postgres_url()
    registry = ModelRegistry(tmp_path, uri=url)
    scorer = scorer_from_registry(tmp_path, registry=registry)
    assert scorer.champion is None and scorer.challenger is None and scorer.champion_reason
    assert registry.absence is not None and "MLflow's tables are not there" in registry.absence
    assert _tables(url) == set()


def test_an_unreachable_server_leaves_the_worker_on_lace_quickly_without_the_password(artifacts: list[Path],
                                                                                      tmp_path: Path) -> None:
    url = f"postgresql://careloom:{SECRET}@127.0.0.1:{free_port()}/registry"
    registry = ModelRegistry(tmp_path, uri=url)
    started = time.monotonic()
    scorer = scorer_from_registry(tmp_path, registry=registry)
    assert time.monotonic() - started < 20  # one short probe, not MLflow's ~100 s of engine retries
    assert scorer.champion is None and scorer.challenger is None and scorer.champion_reason
    assert registry.absence is not None and "cannot be reached" in registry.absence
    assert "CARELOOM_MODEL_REGISTRY_URI" in registry.absence
    with pytest.raises(RegistryError, match="cannot be reached") as refused:
        registry.register(artifacts[0])
    assert not registry.artifacts.exists()  # refused before anything was copied
    shown = " ".join([registry.absence, str(refused.value), registry.uri, registry.location, repr(registry),
                      *(str(v) for v in scorer.describe().values())])
    assert SECRET not in shown and "***" in registry.uri


# --- settings -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("uri", "named"), [
    ("mysql://careloom@127.0.0.1/registry", "unknown scheme 'mysql'"),
    (f"http://mlflow:{SECRET}@mlflow.internal:5000", "unknown scheme 'http'"),
    ("postgresql+psycopg2://careloom@127.0.0.1/registry", "unknown scheme 'postgresql+psycopg2'"),
    ("not a url", "is not a database URL"),
    ("sqlite://", "needs a file path"),
    ("postgresql:///registry", "needs a host and a database"),
])
def test_a_bad_registry_uri_is_refused_naming_the_setting_and_the_accepted_forms(uri: str, named: str,
                                                                                  tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(state_dir=tmp_path, model_registry_uri=uri, _env_file=None)
    message = refused.value.errors()[0]["msg"]  # what `careloom` prints (cli.common.settings)
    assert "CARELOOM_MODEL_REGISTRY_URI" in message and named in message
    assert "sqlite:///PATH" in message and "postgresql://" in message and SECRET not in message
    with pytest.raises(ConfigurationError, match="CARELOOM_MODEL_REGISTRY_URI") as direct:
        ModelRegistry(tmp_path, uri=uri)
    assert named in str(direct.value) and SECRET not in str(direct.value)


def test_the_registry_is_refused_in_the_records_database(tmp_path: Path) -> None:
    shared = "postgresql://careloom@db.internal:5432/careloom"
    with pytest.raises(ValidationError, match="names the care records database.*database of its own"):
        Settings(state_dir=tmp_path, database_url=shared, model_registry_uri=shared.replace("://", "+pg8000://"),
                 _env_file=None)
    with pytest.raises(ValidationError, match="names the care records database"):
        Settings(state_dir=tmp_path, model_registry_uri=f"sqlite:///{tmp_path / 'records.db'}", _env_file=None)
    beside = Settings(state_dir=tmp_path, database_url=shared,
                      model_registry_uri="postgresql://careloom@db.internal:5432/careloom_registry", _env_file=None)
    assert ModelRegistry.from_settings(beside).location == \
        "postgresql+psycopg://careloom@db.internal:5432/careloom_registry"


def test_an_artifacts_setting_naming_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ValidationError, match="CARELOOM_MODEL_ARTIFACTS_DIR: .* is a file; give a folder"):
        Settings(state_dir=tmp_path, model_artifacts_dir=tmp_path / "a-file", _env_file=None)


def test_no_setting_is_the_sqlite_file_under_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path))
    settings = Settings(_env_file=None)
    assert settings.model_registry_uri is None and settings.model_artifacts_dir is None
    registry = ModelRegistry.from_settings(settings)
    assert registry.path == tmp_path / "mlflow.db" and registry.location == str(tmp_path / "mlflow.db")
    assert registry.uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert registry.artifacts == tmp_path / "model-registry"
    assert not registry.exists() and registry.absence == f"no model registry at {tmp_path / 'mlflow.db'}"


def test_the_settings_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CARELOOM_MODEL_REGISTRY_URI", f"postgresql://careloom:{SECRET}@db.internal:5432/registry")
    monkeypatch.setenv("CARELOOM_MODEL_ARTIFACTS_DIR", str(tmp_path / "shared"))
    registry = ModelRegistry.from_settings(Settings(_env_file=None))
    assert registry.path is None and registry.artifacts == tmp_path / "shared"
    assert registry.location == "postgresql+psycopg://careloom:***@db.internal:5432/registry"
    monkeypatch.setenv("CARELOOM_MODEL_REGISTRY_URI", f"sqlite:///{tmp_path / 'elsewhere' / 'registry.db'}")
    on_file = ModelRegistry.from_settings(Settings(_env_file=None))
    assert on_file.path == (tmp_path / "elsewhere" / "registry.db").resolve()
    assert on_file.artifacts == tmp_path / "shared"
