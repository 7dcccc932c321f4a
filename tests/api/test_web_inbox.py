"""The web inbox in a real headless Chromium driven by Playwright: sign in, open the queue, edit, approve."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tests.api.conftest import BROWSER_TEST
from tests.conftest import StartRun, wait_for_status
from tests.fhir_factory import HIGH_RISK, make_member

# Set CARELOOM_SCREENSHOT_DIR=docs/images to refresh the README's screenshots.
SCREENSHOTS = Path(os.environ.get("CARELOOM_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="careloom-shots-"))

pytestmark = BROWSER_TEST


async def test_supervisor_signs_in_edits_and_approves_and_the_run_completes(
    browser, api_url: str, approvers: dict[str, str], start_run: StartRun, store
) -> None:
    """An RN signs in, finds the care plan in the queue, edits its title, approves it; the run completes."""
    handle = await start_run(make_member(store, **HIGH_RISK))
    [item] = (await wait_for_status(handle, lambda s: len(s.pending_approvals) == 1)).pending_approvals
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    await page.goto(f"{api_url}/inbox")
    assert page.url.startswith(f"{api_url}/login")
    await page.fill("#token", "clt_not-a-real-token")
    await page.click("button[type=submit]")
    assert "unknown or revoked token" in (await page.inner_text("[role=alert]")).lower()
    await page.fill("#token", approvers["rn.kim"])
    await page.click("button[type=submit]")

    row = page.locator(f'tr[data-approval="{handle.id}/{item.approval_id}"]')
    for _ in range(30):  # visibility is eventually consistent
        if await row.count():
            break
        await page.wait_for_timeout(300)
        await page.reload()
    assert 1 == await row.count()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "inbox.png"), full_page=True)

    await row.locator("a").click()
    assert "draft_care_plan" in await page.inner_text("h2")
    assert "LACE 10" in await page.inner_text("main")
    # The session's worker serves no learned model: the page says LACE scored alone, and why (the worker's reason).
    main = await page.inner_text("main")
    assert "no model registry at " in main and "mlflow.db: LACE alone" in main
    assert "CarePlan" in await page.inner_text("main")
    await page.screenshot(path=str(SCREENSHOTS / "item.png"), full_page=True)

    arguments = json.loads(await page.input_value("#arguments"))
    await page.fill("#arguments", "{ not json")
    await page.click("#edit")
    assert "not valid JSON" in await page.inner_text("[role=alert]")

    arguments["title"] = "Heart failure transition plan (RN edited)"
    await page.fill("#arguments", json.dumps(arguments))
    await page.click("#edit")
    assert "edited" in await page.inner_text("[role=status]")

    result = await handle.result()
    plan = next(a for a in result.actions if a.tool == "draft_care_plan")
    assert ("executed", True, "rn.kim") == (plan.status, plan.edited, plan.approved_by)
    stored = store.get(*plan.reference.split("/"))
    assert "Heart failure transition plan (RN edited)" == stored["title"]
    assert all(url.startswith(api_url) for url in requests), [u for u in requests if not u.startswith(api_url)]
