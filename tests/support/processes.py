"""Real api/worker processes started the way containers start them (``python -m ...``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import SecretStr

from jobs_common.settings import Settings


def settings_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment that makes a child process read ``settings``."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_none=True).items():
        if hasattr(value, "total_seconds"):
            value = f"{value.total_seconds()}s"
        elif isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    env.update(overrides)
    return env


class ChildProcess:
    def __init__(self, module: str, env: dict[str, str], log_path: Path, args: list[str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *(args or [])], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"process exited ({self.process.returncode}):\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{needle!r} not logged within {timeout}s:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.05)

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return await self.wait(timeout)

    async def wait(self, timeout: float = 30) -> int:
        """Waits for the process to exit without signalling it (SIGKILL after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
        return self.process.returncode


@contextlib.asynccontextmanager
async def worker_serving(settings: Settings, queue: str, logs: Path) -> AsyncIterator[ChildProcess]:
    """A worker process serving ``queue``, ready when entered, stopped on the way out; its log
    and health file in ``logs``."""
    env = settings_env(settings.model_copy(update={"worker_queue": queue}), WORKER_HEALTH_FILE=str(logs / "h"))
    worker = ChildProcess("jobs_worker", env, logs / "worker.log")
    try:
        await worker.wait_for_log("ready on queue")
        yield worker
    finally:
        await worker.stop()
