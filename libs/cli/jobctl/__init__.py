"""jobctl: job-scheduler's command line, on the Python SDK (jobs_client). See docs/cli.md."""
