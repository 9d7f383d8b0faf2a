"""What a running osiris tells its operators: logs and their context, Prometheus metrics,
OpenTelemetry tracing, Sentry, live profiles, token usage, and keeping third-party chatter
quiet."""
