"""``jobctl completion bash|zsh|fish``: the shell completion script, from click's own."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from jobctl._app import cli

__all__ = ["completion"]


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script: eval "$(jobctl completion bash)" (or add it to your rc file)."""
    kind = get_completion_class(shell)
    if kind is None:  # click knows all three
        raise click.UsageError(f"no completion for {shell}")
    click.echo(kind(cli, {}, "jobctl", "_JOBCTL_COMPLETE").source())
