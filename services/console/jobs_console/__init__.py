"""job-scheduler's web console: its own process, a client of the API like any other (each user
signs in with an API token), serving pages that update live. See docs/console.md."""
