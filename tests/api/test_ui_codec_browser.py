"""The Temporal Web UI shows decrypted payloads through careloom's codec endpoint, to signed-in users only.

Real parts throughout: the embedded dev server with its Web UI and ``--ui-codec-endpoint``, a worker
and client with payload encryption, careloom's API on loopback and headless Chromium.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from pydantic import SecretStr

from api.users import UserDirectory
from cli.demo import api_server
from runtime.codec import generate_key
from runtime.settings import Settings
from runtime.temporal_client import connect
from runtime.temporal_server import EmbeddedTemporalServer
from store.connect import configured_database
from store.sql_records import SqlCareRecordStore
from tests.api.conftest import BROWSER_TEST
from tests.conftest import OPEN_WINDOW
from tests.fhir_factory import make_member
from tests.net import free_port
from worker import build_worker
from workflows.outreach_client import start_outreach

pytestmark = BROWSER_TEST


async def _history_text(browser, ui_url: str, codec_url: str, workflow_id: str, run_id: str,
                        token: str | None, api_url: str) -> tuple[str, list[int]]:
    """The workflow page's text as one browser user sees it, and the codec endpoint's answers to that user."""
    context = await browser.new_context()
    page = await context.new_page()
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if r.url.startswith(codec_url) else None)
    if token is not None:
        await page.goto(f"{api_url}/login")
        await page.fill("#token", token)
        await page.click("button[type=submit]")
    # The UI's own codec settings (Settings > Codec Server): careloom's endpoint, with the browser's
    # cookies for it ("Include cross-origin credentials"), as an operator sets them once per browser.
    await page.goto(ui_url)
    await page.evaluate("""([endpoint]) => {
        localStorage.setItem('endpoint', JSON.stringify(endpoint));
        localStorage.setItem('includeCredentials', 'true');
        localStorage.setItem('overrideRemoteCodecConfiguration', 'true');
    }""", [codec_url])
    await page.goto(f"{ui_url}/namespaces/default/workflows/{workflow_id}/{run_id}/history")
    await page.wait_for_load_state("networkidle")
    for _ in range(40):
        if answers:
            break
        await page.wait_for_timeout(250)
    await page.wait_for_timeout(1000)
    text = await page.inner_text("body")
    await context.close()
    return text, answers


async def test_web_ui_decodes_payloads_for_a_signed_in_user_and_not_for_others(browser, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, embedded_port=free_port(), embedded_ui_port=free_port(), api_port=free_port(),
                        tool_attempts=1, payload_keys=SecretStr(f"ui={generate_key()}"), _env_file=None)
    store = SqlCareRecordStore(configured_database(settings))
    member = make_member(store)
    token = UserDirectory(settings.users_path).add_user("rn.kim", "rn")
    async with EmbeddedTemporalServer(settings) as server:
        client = await connect(settings.model_copy(update={"temporal_address": server.address}))
        queue = f"ui-{uuid.uuid4().hex[:8]}"
        async with build_worker(client, settings, store, task_queue=queue):
            handle, _ = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                             policy=OPEN_WINDOW, task_queue=queue, tool_attempts=1,
                                             salt=settings.pseudonym_salt.get_secret_value())
            await handle.result()
        run_id = (await handle.describe()).run_id
        async with api_server(settings, client) as api_url:
            codec_url = f"{api_url}/codec"
            signed_in, ok = await _history_text(browser, server.ui_url, codec_url, handle.id, run_id, token, api_url)
            stranger, refused = await _history_text(browser, server.ui_url, codec_url, handle.id, run_id, None,
                                                    api_url)

    assert ok and set(ok) <= {200}, ok
    assert member.member_id in signed_in  # the decrypted workflow input, as the UI renders it
    assert refused and set(refused) == {401}, refused
    assert member.member_id not in stranger
