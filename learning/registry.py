"""The model registry: MLflow's model registry on a local SQLite backend (``<state_dir>/mlflow.db``).

``register`` verifies an artifact folder (:func:`learning.model.load_model`: the model file's sha256 is its
manifest's), copies it under ``<state_dir>/model-registry/<name>/<model sha256[:16]>`` (the registered copy is
what serving loads, so retraining into the same folder changes nothing registered) and creates a model version
whose tags carry the model file's and the manifest's sha256 and the manifest's facts. Versions are named by
aliases, MLflow's replacement for the deprecated stages: ``champion`` (the promoted model, scoring in every
run) and ``challenger`` (shadow mode: scoring beside it, affecting nothing).

``promote`` verifies the version's registered copy against the registry's digests, then runs the evaluation
gate it is given (the CLI passes the scenario suite, as ``careloom eval run --planner offline`` runs it) and
refuses (:class:`PromotionRefused`) unless it passes; a shadow promotion (challenger) needs no gate, it affects
nothing. The gate's outcome is recorded on the version as tags.

MLflow is imported only when a registry is opened (it takes seconds); a worker whose state folder has no
``mlflow.db`` never imports it. MLflow's usage telemetry is switched off before the import.

``CARELOOM_MODEL_REGISTRY_URI`` may put the registry in a PostgreSQL database instead (a database of its own:
MLflow and the records store would share one ``alembic_version`` table), and ``CARELOOM_MODEL_ARTIFACTS_DIR``
the registered copies in a shared folder (:meth:`ModelRegistry.from_settings`). On PostgreSQL, :meth:`exists`
asks the server whether MLflow's registry tables are there, in one short connection that creates nothing; a
server that cannot be reached is "no registry" with a reason (:attr:`ModelRegistry.absence`), never an error,
so a worker keeps LACE. The URL's password never appears in a message (:attr:`ModelRegistry.location`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from learning.model import MANIFEST_FILE, LoadedModel, ModelIntegrityError, load_model, sha256_file
from runtime.errors import CareloomError, ConfigurationError
from runtime.settings import REGISTRY_SETTING, registry_sqlalchemy_url

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from runtime.settings import Settings

__all__ = ["CHALLENGER", "CHAMPION", "REGISTRY_FILE", "TAG_GATE", "GateResult", "ModelRegistry", "PromotionRefused",
           "RegisteredVersion", "RegistryError"]

REGISTRY_FILE = "mlflow.db"
ARTIFACTS_FOLDER = "model-registry"
CHAMPION, CHALLENGER = "champion", "challenger"
TAG_DIGEST = "careloom.model_sha256"
TAG_MANIFEST = "careloom.manifest_sha256"
TAG_LABEL = "careloom.version_label"
TAG_GATE = "careloom.gate"  # "passed" or "failed": the evaluation gate's outcome at promotion
REGISTRY_TABLES = frozenset({"alembic_version", "registered_models", "model_versions", "registered_model_aliases"})
"""MLflow's tables a server database must hold to be a registry (MLflow creates them all at once)."""
CONNECT_TIMEOUT_SECONDS = 5


class RegistryError(CareloomError):
    """The registry cannot do what was asked (unknown version, a copy already registered, no registry)."""


class PromotionRefused(CareloomError):
    """A promotion refused: the evaluation gate failed, or the version's artifact does not verify."""


@dataclass(frozen=True)
class GateResult:
    passed: bool
    summary: str


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    source: Path
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def digest(self) -> str:
        return self.tags.get(TAG_DIGEST, "")

    @property
    def manifest_digest(self) -> str:
        return self.tags.get(TAG_MANIFEST, "")

    @property
    def label(self) -> str:
        return self.tags.get(TAG_LABEL, "")


def _give_back_logging() -> None:
    """MLflow's store setup gives the ``alembic`` logger its own handler and stops it propagating: careloom's
    log stream (runtime.logging, one root handler, PHI redaction) would no longer see alembic's warnings. Put
    it back as careloom configures it (store/schema.py: WARNING, through the root handler)."""
    import logging

    alembic = logging.getLogger("alembic")
    alembic.handlers.clear()
    alembic.propagate = True
    alembic.setLevel(logging.WARNING)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tags(manifest: dict[str, Any], manifest_digest: str) -> dict[str, str]:
    validation = (manifest.get("metrics") or {}).get("validation") or {}
    tags = {
        TAG_DIGEST: manifest["model_file"]["sha256"],
        TAG_MANIFEST: manifest_digest,
        TAG_LABEL: str(manifest["version"]),
        "careloom.estimator": str(manifest.get("estimator", "")),
        "careloom.features": str(len(manifest["features"])),
        "careloom.training_data_sha256": str((manifest.get("training_data") or {}).get("sha256", "")),
        "careloom.git_sha": str((manifest.get("code_version") or {}).get("git_sha") or "unknown"),
        "careloom.seed": str(manifest.get("seed", "")),
    }
    for key in ("auc", "lace_auc", "brier", "lace_brier"):
        if validation.get(key) is not None:
            tags[f"careloom.validation.{key}"] = f"{validation[key]:.4f}"
    return tags


class ModelRegistry:
    """MLflow's model registry: tracking and registry URI ``sqlite:///<state_dir>/mlflow.db``, or ``uri`` (a
    ``sqlite:///PATH`` or PostgreSQL URL, :func:`runtime.settings.registry_sqlalchemy_url`); registered copies
    under ``artifacts`` (default ``<state_dir>/model-registry``)."""

    def __init__(self, state_dir: Path, *, uri: str | None = None, artifacts: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.artifacts = Path(artifacts) if artifacts is not None else self.state_dir / ARTIFACTS_FOLDER
        self.path: Path | None
        if uri is None:
            self.path = self.state_dir / REGISTRY_FILE
            self._connect_uri = f"sqlite:///{self.path.resolve()}"
        else:
            try:
                self._connect_uri = registry_sqlalchemy_url(uri)
            except ValueError as err:
                raise ConfigurationError(str(err)) from None
            parsed = make_url(self._connect_uri)
            self.path = Path(parsed.database or "").resolve() if parsed.get_backend_name() == "sqlite" else None
            if self.path is not None:
                self._connect_uri = f"sqlite:///{self.path}"
        self.uri = make_url(self._connect_uri).render_as_string(hide_password=True)
        """The registry's URL, its password (if any) masked: safe to show and log."""
        self.absence: str | None = None
        """Why :meth:`exists` last found no registry (no file, no tables, a server that cannot be reached)."""
        self._tables_seen = False
        self._client: MlflowClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """The registry ``CARELOOM_MODEL_REGISTRY_URI`` and ``CARELOOM_MODEL_ARTIFACTS_DIR`` name (unset: the
        SQLite file and the copies under the state folder)."""
        return cls(settings.state_dir, uri=settings.model_registry_uri, artifacts=settings.model_artifacts_dir)

    @property
    def location(self) -> str:
        """Where the registry is, for messages: the SQLite file's path, or the server URL without its password."""
        return str(self.path) if self.path is not None else self.uri

    def __repr__(self) -> str:
        return f"ModelRegistry({self.location!r}, artifacts={str(self.artifacts)!r})"

    def exists(self) -> bool:
        """Whether there is a registry to read: the SQLite file, or MLflow's tables in the server database.
        Creates nothing and never raises; when False, :attr:`absence` says why."""
        if self._client is not None or self._tables_seen:
            return True
        if self.path is not None:
            found = self.path.is_file()
            self.absence = None if found else f"no model registry at {self.path}"
            return found
        self.absence = self._server_problem(need_tables=True)
        self._tables_seen = self.absence is None
        return self._tables_seen

    def _server_problem(self, *, need_tables: bool) -> str | None:
        """None when the server database answers (and, with ``need_tables``, holds MLflow's registry tables);
        otherwise why not, naming the error class only (a driver's message could carry the host's details)."""
        from sqlalchemy import create_engine, inspect
        from sqlalchemy.pool import NullPool

        url = make_url(self._connect_uri)
        pg8000 = url.drivername.endswith("pg8000")
        timeout = {"timeout" if pg8000 else "connect_timeout": CONNECT_TIMEOUT_SECONDS}
        try:
            engine = create_engine(url, poolclass=NullPool, connect_args=timeout)
        except Exception as err:  # noqa: BLE001 - a driver that will not load: no registry, and say why
            return f"the model registry at {self.uri} cannot be opened ({err.__class__.__name__})"
        try:
            with engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
        except Exception as err:  # noqa: BLE001 - unreachable, refused credentials, no such database
            return (f"the model registry at {self.uri} cannot be reached ({err.__class__.__name__}); check "
                    f"{REGISTRY_SETTING} and the server")
        finally:
            engine.dispose()
        if need_tables and not REGISTRY_TABLES <= tables:
            return (f"no model registry in {self.uri} yet (MLflow's tables are not there; `careloom model "
                    "register` creates them)")
        return None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            if self.path is None:  # MLflow retries an unreachable server for about 100 s: ask once, quickly
                problem = self._server_problem(need_tables=False)
                if problem is not None:
                    raise RegistryError(problem)
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            os.environ.setdefault("DO_NOT_TRACK", "true")
            from mlflow import MlflowClient

            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            client = MlflowClient(tracking_uri=self._connect_uri, registry_uri=self._connect_uri)
            client.search_registered_models(max_results=1)  # open (and migrate) the store now...
            _give_back_logging()  # ...and undo what opening it did to the process's logging
            self._client = client
        return self._client

    # --- reading ------------------------------------------------------------------------------------------
    def _version(self, mv: Any) -> RegisteredVersion:  # noqa: ANN401 - mlflow's ModelVersion
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC) if mv.creation_timestamp else None
        return RegisteredVersion(name=mv.name, version=str(mv.version), source=Path(mv.source),
                                 aliases=tuple(sorted(mv.aliases or ())), tags=dict(mv.tags or {}),
                                 created_at=created)

    def names(self) -> list[str]:
        if not self.exists():
            return []
        return sorted(m.name for m in self.client.search_registered_models())

    def versions(self, name: str) -> list[RegisteredVersion]:
        """Every version of ``name``, oldest first, with its aliases (none when the model is not registered)."""
        if not self.exists():
            return []
        from mlflow.exceptions import MlflowException

        try:
            aliases = self.client.get_registered_model(name).aliases or {}
        except MlflowException:
            return []
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        found = [self._version(mv) for mv in self.client.search_model_versions(f"name='{name}'")]
        return sorted((RegisteredVersion(name=v.name, version=v.version, source=v.source,
                                         aliases=tuple(sorted(by_version.get(v.version, ()))), tags=v.tags,
                                         created_at=v.created_at) for v in found), key=lambda v: int(v.version))

    def get(self, name: str, version: str) -> RegisteredVersion:
        for found in self.versions(name):
            if found.version == str(version):
                return found
        raise RegistryError(f"{name} has no version {version} in the registry {self.location} "
                            "(`careloom model list` shows the versions)")

    def by_alias(self, name: str, alias: str) -> RegisteredVersion | None:
        """The version ``alias`` names, or None (no registry, no such model, no such alias)."""
        for found in self.versions(name):
            if alias in found.aliases:
                return found
        return None

    # --- writing ------------------------------------------------------------------------------------------
    def register(self, artifact: Path) -> RegisteredVersion:
        """A new version of the artifact's model: verified, copied into the registry's folder, tagged."""
        model = load_model(artifact)  # refuses a model file whose digest is not the manifest's
        manifest = model.manifest
        name, digest = manifest["name"], manifest["model_file"]["sha256"]
        client = self.client  # opened (created) first: a server that cannot be reached refuses before any copy
        for existing in self.versions(name):
            if existing.digest == digest:
                raise RegistryError(f"this model file (sha256 {digest[:16]}…) is already {name} version "
                                    f"{existing.version}: nothing to register")
        target = self.artifacts / name / digest[:16]
        if target.exists():
            shutil.rmtree(target)  # a copy left by an earlier registration that did not finish
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(model.folder, target)
        manifest_digest = sha256_file(target / MANIFEST_FILE)
        load_model(target)  # the copy verifies too
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(
                name, description="30-day readmission risk: prioritises outreach, never a coverage decision")
        created = client.create_model_version(
            name, source=str(target.resolve()), tags=_tags(manifest, manifest_digest),
            description=f"{manifest.get('estimator', '')} {manifest['version']}")
        return self.get(name, str(created.version))

    def verify(self, registered: RegisteredVersion) -> LoadedModel:
        """The registered copy loaded, after checking its manifest and model file against the registry's tags
        (and the model file against the manifest, :func:`load_model`); :class:`ModelIntegrityError` names a
        mismatch. The copy must be where :meth:`register` puts it (``<artifacts>/<name>/<model sha256[:16]>``):
        a version whose ``source`` was pointed elsewhere (by anyone who can write the registry's database) is
        refused before any file of it is read, let alone unpickled."""
        expected = (self.artifacts / registered.name / registered.digest[:16]).resolve()
        if not registered.digest or registered.source.resolve() != expected:
            raise ModelIntegrityError(
                f"{registered.name} version {registered.version}: its registered copy is not in this registry's "
                f"artifacts folder ({self.artifacts}); refusing to load it (register the artifact again with "
                "`careloom model register`)")
        manifest_path = registered.source / MANIFEST_FILE
        if not manifest_path.is_file():
            raise ModelIntegrityError(f"{registered.name} version {registered.version}: its registered copy "
                                      f"{registered.source} has no {MANIFEST_FILE}")
        found = _sha256_bytes(manifest_path.read_bytes())
        if found != registered.manifest_digest:
            raise ModelIntegrityError(
                f"{registered.name} version {registered.version}: manifest sha256 {found[:16]}… is not the "
                f"registry's {registered.manifest_digest[:16]}…; the registered copy was changed")
        model = load_model(registered.source)
        if model.manifest["model_file"]["sha256"] != registered.digest:
            raise ModelIntegrityError(
                f"{registered.name} version {registered.version}: model sha256 "
                f"{model.manifest['model_file']['sha256'][:16]}… is not the registry's {registered.digest[:16]}…")
        return model

    def promote(self, name: str, version: str, *, gate: Callable[[RegisteredVersion], GateResult] | None = None,
                shadow: bool = False) -> tuple[RegisteredVersion, GateResult | None]:
        """Set ``champion`` (after the gate passes) or, with ``shadow``, ``challenger`` on ``version``."""
        registered = self.get(name, version)
        try:
            self.verify(registered)
        except ModelIntegrityError as err:
            raise PromotionRefused(f"promotion refused: {err}") from None
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        if shadow:
            if CHAMPION in registered.aliases:
                raise PromotionRefused(f"{name} version {version} is the champion; a challenger is another "
                                       "version")
            self.client.set_registered_model_alias(name, CHALLENGER, registered.version)
            self.client.set_model_version_tag(name, registered.version, "careloom.shadowed_at", now)
            return self.get(name, version), None
        if gate is None:
            raise PromotionRefused("promotion refused: no evaluation gate was given")
        result = gate(registered)
        self.client.set_model_version_tag(name, registered.version, TAG_GATE,
                                          "passed" if result.passed else "failed")
        self.client.set_model_version_tag(name, registered.version, "careloom.gate_summary", result.summary[:4000])
        self.client.set_model_version_tag(name, registered.version, "careloom.gate_at", now)
        if not result.passed:
            raise PromotionRefused(f"promotion of {name} version {version} refused: the evaluation gate failed "
                                   f"({result.summary})")
        self.client.set_registered_model_alias(name, CHAMPION, registered.version)
        self.client.set_model_version_tag(name, registered.version, "careloom.promoted_at", now)
        if CHALLENGER in registered.aliases:  # promoted from shadow: it no longer shadows itself
            self.client.delete_registered_model_alias(name, CHALLENGER)
        return self.get(name, version), result
