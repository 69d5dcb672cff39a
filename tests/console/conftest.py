"""A console process against the session's api, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from jobs_api.server import RunningApi
from jobs_client import AsyncJobsClient, Connection
from tests.support.processes import ChildProcess
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Screenshots of every page the browser tests open, to look at (make test keeps the last run's).
SCREENSHOTS = Path(os.environ.get("TEST_OUTPUT_DIR", ROOT / ".test-output")) / "console"


@dataclass
class Console:
    url: str
    process: ChildProcess


async def start_console(api_port: int, log: Path, **env: str) -> Console:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_API_", "CONSOLE_"))}
    environment.update(JOBS_API_ADDRESS=f"127.0.0.1:{api_port}", CONSOLE_PORT=str(port), ENVIRONMENT="development")
    environment.update(env)
    process = ChildProcess("jobs_console", environment, log)
    await process.wait_for_log("console on")
    return Console(f"http://127.0.0.1:{port}", process)


@pytest.fixture
async def console(api: RunningApi, tmp_path: Path) -> AsyncIterator[Console]:
    started = await start_console(api.port, tmp_path / "console.log")
    try:
        yield started
    finally:
        await started.process.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (make test installs it: make browser)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    opened = await context.new_page()
    opened.set_default_timeout(20_000)
    try:
        yield opened
    finally:
        await context.close()


@pytest.fixture
async def sdk(api: RunningApi) -> AsyncIterator[AsyncJobsClient]:
    async with AsyncJobsClient(Connection(f"127.0.0.1:{api.port}")) as client:
        yield client


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
