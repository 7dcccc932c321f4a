"""``careloom listen``: event feeds that start runs on their own."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import run, settings

app = typer.Typer(help="Listen to event feeds (HL7 v2 ADT over MLLP) and start runs from them.",
                  no_args_is_help=True)


@app.callback()
def listen() -> None:
    """Listen to event feeds and start runs from them (one command per feed)."""


@app.command("adt")
def adt(
    host: Annotated[str | None, typer.Option(help="Address to bind (default CARELOOM_ADT_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="MLLP port (default CARELOOM_ADT_PORT, 2575).")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics (/metrics) on this port too.")] = None,
) -> None:
    """HL7 v2 ADT listener: A03 discharges start outreach runs (ACK AA only once the run is durable);
    A13/A11 withdraw their runs (pending approvals recorded as withdrawn); A01/A04/A08 keep the encounter
    current. TLS, allow-lists and limits come from CARELOOM_ADT_* settings (docs/adt-listener.md). Runs until
    SIGINT or SIGTERM."""

    async def go() -> None:
        from store.connect import configured_database
        from cli.demo import _until_signalled
        from feeds.adt_listener import serve_adt
        from runtime.temporal_client import connect
        from store.sql_records import SqlCareRecordStore

        cfg = settings()
        client = await connect(cfg)
        if metrics_port is not None:
            from prometheus_client import start_http_server

            from runtime.metrics import REGISTRY

            start_http_server(metrics_port, addr=cfg.metrics_host, registry=REGISTRY)
        server = await serve_adt(cfg, client, SqlCareRecordStore(configured_database(cfg)), host=host, port=port)
        where = server.sockets[0].getsockname()
        try:
            await _until_signalled(f"careloom listen adt: MLLP on {where[0]}:{where[1]}"
                                   + (f", metrics on :{metrics_port}/metrics" if metrics_port else "")
                                   + "; Ctrl-C to stop")
        finally:
            server.close()
            await server.wait_closed()

    run(go())
