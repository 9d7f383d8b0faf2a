"""NATS, the client side: the typed `Bus`, connecting, JetStream acks, watched requests,
NATS micro services, the core's streams, and the embedded `nats-server`."""
