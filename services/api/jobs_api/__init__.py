"""job-scheduler's gRPC api."""
