"""Operator tooling behind CLI verbs: NATS server configs with per-role permissions, dead
letters, the subject catalogue, and the demo. Only the CLI imports it."""
