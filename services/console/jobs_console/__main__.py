"""``python -m jobs_console``: serves the console on CONSOLE_HOST:CONSOLE_PORT until SIGTERM."""

from __future__ import annotations

import ssl
import sys

from aiohttp import web

from jobs_console._app import make_app
from jobs_console._settings import ConsoleSettings


def main() -> None:
    try:
        settings = ConsoleSettings.from_env()
        settings.check()
    except ValueError as error:
        sys.exit(f"jobs-console: {error}")
    context = None
    if settings.https:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    scheme = "https" if context else "http"
    web.run_app(
        make_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_context=context,
        access_log=None,
        shutdown_timeout=3,  # live pages hold streams open: end them instead of waiting
        print=lambda _: print(
            f"console on {scheme}://{settings.host}:{settings.port}/ (API at {settings.api.address})", flush=True
        ),
    )


if __name__ == "__main__":
    main()
