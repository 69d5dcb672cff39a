"""The ``jobctl`` command: its connection options, the ``-o`` every command takes, the exit codes,
and the one place an API error becomes a message instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from rich.text import Text

from jobctl._output import FORMATS, Printer
from jobs_client import (
    Connection,
    FailedPreconditionError,
    InvalidArgumentError,
    JobsClient,
    JobsError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = ["EXIT_JOB_FAILED", "Session", "cli", "main", "output_option", "session"]

# What a script can tell from jobctl's exit code (click's own usage errors exit 2).
EXIT_OK = 0
EXIT_REFUSED = 1  # the API refused the call: invalid argument, failed precondition, ...
EXIT_USAGE = 2  # a bad option or argument, before any call
EXIT_NOT_FOUND = 3
EXIT_DENIED = 4  # unauthenticated or permission denied
EXIT_UNAVAILABLE = 5  # the API did not answer
EXIT_JOB_FAILED = 6  # `jobs watch` / `--wait`: the execution ended DEAD or CANCELLED
_BY_ERROR: list[tuple[type[JobsError], int]] = [
    (NotFoundError, EXIT_NOT_FOUND),
    (UnauthenticatedError, EXIT_DENIED),
    (PermissionDeniedError, EXIT_DENIED),
    (UnavailableError, EXIT_UNAVAILABLE),
    (InvalidArgumentError, EXIT_REFUSED),
    (FailedPreconditionError, EXIT_REFUSED),
]

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass
class Session:
    """One invocation's connection and output format; the client is made on first use."""

    connection: Connection
    timeout: float
    printer: Printer
    _client: JobsClient | None = field(default=None, repr=False)

    @property
    def client(self) -> JobsClient:
        if self._client is None:
            try:
                self._client = JobsClient(self.connection, timeout=self.timeout)
            except (ValueError, OSError) as error:  # TLS files missing or half given
                raise click.UsageError(f"cannot connect: {error}") from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def session() -> Session:
    """The invocation's session, which the jobctl group made before any of its commands runs."""
    found = click.get_current_context().find_object(Session)
    assert found is not None, "jobctl's commands run under the jobctl group"
    return found


def _set_output(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        found = ctx.find_object(Session)
        if found is not None:
            found.printer = Printer(value)


def output_option(command: _F) -> _F:
    """``-o/--output table|json|yaml`` on a command (it may also come before the command)."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        default=None,
        expose_value=False,
        callback=_set_output,
        help="table (default), json (the API's JSON, for scripts) or yaml.",
    )(command)


class _Jobctl(click.Group):
    """The root group: an API error in any command becomes a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except JobsError as error:
            address = ctx.obj.connection.address if isinstance(ctx.obj, Session) else "?"
            ctx.exit(_report(error, address))


@click.group(cls=_Jobctl, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--address", envvar="JOBS_API_ADDRESS", help="host:port of the API [env JOBS_API_ADDRESS; localhost:50051]"
)
@click.option("--token", envvar="JOBS_API_TOKEN", help="Bearer token [env JOBS_API_TOKEN].")
@click.option("--tls-ca", envvar="JOBS_API_TLS_CA_FILE", help="CA of the API's certificate; TLS on when given.")
@click.option("--tls-cert", envvar="JOBS_API_TLS_CERT_FILE", help="Client certificate for mutual TLS.")
@click.option("--tls-key", envvar="JOBS_API_TLS_KEY_FILE", help="Client key for mutual TLS.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds per call.")
@click.option("-o", "--output", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
@click.version_option(package_name="jobctl")
@click.pass_context
def cli(
    ctx: click.Context,
    address: str | None,
    token: str | None,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    timeout: float,
    output: str,
) -> None:
    """jobctl talks to a job-scheduler API: jobs, executions, queues, workers and dead letters.

    \b
    Exit codes: 0 ok, 1 the API refused the call, 2 bad usage, 3 not found,
    4 unauthenticated or denied, 5 the API did not answer, 6 a watched job failed.
    """
    connection = Connection.from_env(
        address=address, token=token, tls_ca_file=tls_ca, tls_cert_file=tls_cert, tls_key_file=tls_key
    )
    found = Session(connection, timeout, Printer(output))
    ctx.obj = found
    ctx.call_on_close(found.close)


def _report(error: JobsError, address: str) -> int:
    err = Printer("table").err
    message = error.message or error.code.name
    if isinstance(error, UnavailableError):
        message = f"cannot reach the API at {address} ({message})"
    err.print(Text.assemble(("error:", "bold red"), " ", message))
    for path, why in error.field_violations.items():
        if f"{path}: {why}" not in error.message:
            err.print(f"  {path}: {why}")
    if error.reason and error.reason != error.code.name:
        err.print(f"  reason: {error.reason}")
    return next((code for kind, code in _BY_ERROR if isinstance(error, kind)), EXIT_REFUSED)


def main() -> None:
    """The console script: API errors are messages and exit codes, never tracebacks."""
    from jobctl import _commands  # noqa: F401  (registers the command groups)

    try:
        code = cli.main(prog_name="jobctl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_REFUSED)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
