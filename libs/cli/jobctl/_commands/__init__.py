"""jobctl's command groups; importing this registers them on ``jobctl._app.cli``."""

from jobctl._commands import completion, dead_letters, executions, jobs, queues

__all__ = ["completion", "dead_letters", "executions", "jobs", "queues"]
