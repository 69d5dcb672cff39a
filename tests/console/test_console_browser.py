"""The web console in a real browser (Debian's chromium) against a real api and workers: a job's
page sees SUCCEEDED arrive without a reload, a dead letter replayed from the page runs, a purge
asks first, a queue paused from the overview stops claims, and signing in takes the API's token.
Every page is saved as a screenshot (see SCREENSHOTS)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect
from pydantic import SecretStr

from jobs_api.server import running_api
from jobs_client import AsyncJobsClient, http_job, retry_policy, run_at
from jobs_common.settings import Settings
from jobscheduler.v1 import resources_pb2 as pb
from tests.console.conftest import Console, screenshot, start_console
from tests.support.processes import ChildProcess, settings_env
from tests.support.target import TargetServer


async def _final(sdk: AsyncJobsClient, execution_id: str) -> pb.Execution:
    for _ in range(400):
        execution = await sdk.get_execution(execution_id)
        if execution.state in (pb.EXECUTION_STATE_SUCCEEDED, pb.EXECUTION_STATE_DEAD):
            return execution
        await asyncio.sleep(0.05)
    raise AssertionError(f"execution {execution_id} did not end")


@pytest.mark.usefixtures("worker")
async def test_a_job_page_sees_succeeded_arrive_without_a_reload(
    console: Console, page: Page, sdk: AsyncJobsClient, target: TargetServer, key: str
):
    job = await sdk.create_job(
        # Due in 5 s: the page opens (and shows SCHEDULED) well before, even on a loaded machine.
        http_job(target.url(f"/sleep/1/{key}"), schedule=run_at(datetime.now(UTC) + timedelta(seconds=5)))
    )
    await page.goto(f"{console.url}/jobs/{job.id}")
    await page.evaluate("window.sameDocument = true")
    await expect(page.locator("table.grid .state").first).to_have_text("SCHEDULED")
    await screenshot(page, "job-scheduled")
    await expect(page.locator("table.grid .state").first).to_have_text("SUCCEEDED", timeout=20_000)
    assert await page.evaluate("window.sameDocument") is True  # updated in place, never reloaded
    await screenshot(page, "job-succeeded")

    await page.locator("table.grid a").first.click()
    await expect(page.locator("h1")).to_have_text(f"Execution {job.last_execution.id}")
    await expect(page.locator(".timeline .bar.ok")).to_have_count(1)
    await expect(page.locator("code.excerpt")).to_have_text("slept")
    await screenshot(page, "execution")

    recurring = await sdk.create_job(
        http_job("https://hooks.example.com/console", queue="console-idle", schedule=_weekday_mornings())
    )
    await page.goto(f"{console.url}/jobs/{recurring.id}")
    await expect(page.locator("ol.upcoming li")).to_have_count(5)
    await screenshot(page, "job-recurring")
    await sdk.delete_job(recurring.id)


def _weekday_mornings() -> pb.Schedule:
    return pb.Schedule(cron=pb.CronSchedule(expression="0 9 * * MON-FRI", time_zone="Europe/Berlin"))


@pytest.mark.usefixtures("worker")
async def test_a_dead_letter_replayed_from_the_page_runs_and_a_purge_asks_first(
    console: Console, page: Page, sdk: AsyncJobsClient, target: TargetServer, key: str
):
    # Fails its first request only: dead after one attempt, fine when replayed.
    job = await sdk.create_job(http_job(target.url(f"/flaky/{key}?fail=1"), retry=retry_policy(1)))
    assert (await _final(sdk, job.last_execution.id)).state == pb.EXECUTION_STATE_DEAD
    await page.goto(f"{console.url}/dead-letters?job={job.id}")
    rows = page.locator("table.grid tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("HTTP 500")
    await screenshot(page, "dead-letters")
    await rows.first.get_by_role("button", name="Replay").click()
    await expect(page.locator(".notice")).to_contain_text("Replayed 1")
    await expect(page.locator("table.facts .state").first).to_have_text("SUCCEEDED", timeout=20_000)
    await screenshot(page, "replayed")
    replay_id = page.url.rsplit("/", 1)[1].split("?")[0]
    assert (await sdk.get_execution(replay_id)).replay_of == job.last_execution.id
    assert len(target.received(f"/flaky/{key}")) == 2

    dead = await sdk.create_job(http_job(target.url(f"/status/500/{key}"), retry=retry_policy(1)))
    await _final(sdk, dead.last_execution.id)
    await page.goto(f"{console.url}/dead-letters?job={dead.id}")
    await page.get_by_role("link", name="Purge matching…").click()
    await expect(page.locator("main p").first).to_contain_text("This deletes 1 dead letters")
    await screenshot(page, "purge-confirmation")
    await page.get_by_role("link", name="Cancel").click()
    assert [e.id async for e in sdk.list_dead_letters(job_id=dead.id)] == [dead.last_execution.id]
    await page.get_by_role("link", name="Purge matching…").click()
    await page.get_by_role("button", name="Delete 1 dead letters").click()
    await expect(page.locator(".notice")).to_have_text("Purged 1 dead letters.")
    assert [e async for e in sdk.list_dead_letters(job_id=dead.id)] == []


async def test_a_queue_paused_from_the_overview_stops_claims(
    settings: Settings, console: Console, page: Page, sdk: AsyncJobsClient, target: TargetServer, tmp_path: Path
):
    queue = f"console-{uuid.uuid4().hex[:8]}"
    env = settings_env(settings.model_copy(update={"worker_queue": queue}), WORKER_HEALTH_FILE=str(tmp_path / "w"))
    worker = ChildProcess("jobs_worker", env, tmp_path / "worker.log")
    try:
        await worker.wait_for_log("ready on queue")
        first = await sdk.create_job(http_job(target.url(f"/ok/{queue}-1"), queue=queue))
        assert (await _final(sdk, first.last_execution.id)).state == pb.EXECUTION_STATE_SUCCEEDED

        await page.goto(console.url + "/")
        row = page.locator(f'tr[data-queue="{queue}"]')
        await expect(row).to_contain_text("ACTIVE")
        await row.get_by_role("button", name="Pause").click()
        await expect(page.locator(".notice")).to_contain_text(f"Queue {queue} paused")
        await expect(page.locator(f'tr[data-queue="{queue}"]')).to_contain_text("PAUSED")

        held = await sdk.create_job(http_job(target.url(f"/ok/{queue}-2"), queue=queue))
        await asyncio.sleep(2)  # the worker polls every 10 ms: a claim would have happened by now
        assert (await sdk.get_execution(held.last_execution.id)).state == pb.EXECUTION_STATE_QUEUED
        assert target.received(f"/ok/{queue}-2") == []
        # The overview's live table shows it waiting, and the chart has points.
        await expect(page.locator(f'td[data-q="{queue}"][data-f="queued"]')).to_have_text("1", timeout=10_000)
        await expect(page.locator("#queues-chart polyline")).to_have_count(2)
        await screenshot(page, "queues-paused")

        await page.locator(f'tr[data-queue="{queue}"]').get_by_role("button", name="Resume").click()
        await expect(page.locator(f'tr[data-queue="{queue}"]')).to_contain_text("ACTIVE")
        assert (await _final(sdk, held.last_execution.id)).state == pb.EXECUTION_STATE_SUCCEEDED

        await page.goto(console.url + "/workers")
        await expect(page.locator("table.grid")).to_contain_text(queue)
        await screenshot(page, "workers")
    finally:
        await worker.stop()


@pytest.mark.usefixtures("api")
async def test_signing_in_takes_the_apis_token(settings: Settings, page: Page, tmp_path: Path):
    tokens = "console-admin/admin:console-admin-token-0123456789,console-reader/reader:console-reader-token-0123456"
    secured_settings = settings.model_copy(update={"api_tokens": SecretStr(tokens)})
    async with running_api(secured_settings, run_migrations=False) as secured:
        console = await start_console(secured.port, tmp_path / "console.log")
        try:
            await page.goto(console.url + "/dead-letters")
            await expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)dead-letters$"))
            await page.fill("#token", "not-a-token-not-a-token")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator(".error")).to_have_text("That token is not one the API accepts.")
            await screenshot(page, "login-refused")
            await page.fill("#token", "console-reader-token-0123456")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page).to_have_url(console.url + "/dead-letters")
            [cookie] = await page.context.cookies()
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"
            # A reader may look but not pause: the API's roles decide, and the page says why.
            await page.goto(console.url + "/")
            await page.evaluate(
                """() => { const f = document.createElement('form'); f.method = 'post'; f.action = '/queues/pause';
                const i = document.createElement('input'); i.name = 'name'; i.value = 'default'; f.appendChild(i);
                document.body.appendChild(f); f.submit(); }"""
            )
            await expect(page.locator("h1")).to_have_text("Not allowed")
            await expect(page.locator(".error")).to_contain_text("admin")
            await screenshot(page, "not-allowed")
            await page.goto(console.url + "/")
            await page.get_by_role("button", name="Sign out").click()
            await expect(page).to_have_url(console.url + "/login")
        finally:
            await console.process.stop()


async def test_a_form_of_another_site_cannot_post(console: Console):
    async with httpx.AsyncClient(base_url=console.url) as http:
        refused = await http.post("/queues/pause", data={"name": "default"}, headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        nothing = await http.post("/queues/pause", data={"name": "default"})
        assert nothing.status_code == 403  # neither Origin nor Referer
        assert (await http.get("/jobs/not-a-uuid")).status_code == 400
        missing = await http.get(f"/jobs/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert "not found" in missing.text
