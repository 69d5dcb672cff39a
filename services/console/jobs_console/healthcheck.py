"""``python -m jobs_console.healthcheck``: exit 0 when the console on CONSOLE_PORT answers
/healthz (the container HEALTHCHECK; plain HTTP or HTTPS as configured)."""

from __future__ import annotations

import ssl
import sys
import urllib.request

from jobs_console._settings import ConsoleSettings


def main() -> int:
    settings = ConsoleSettings.from_env()
    scheme = "https" if settings.https else "http"
    context = ssl._create_unverified_context() if settings.https else None  # its own certificate, on loopback
    try:
        with urllib.request.urlopen(
            f"{scheme}://127.0.0.1:{settings.port}/healthz", timeout=4, context=context
        ) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as error:
        print(f"console not answering: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
