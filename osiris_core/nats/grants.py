"""What a plugin's processes need of NATS beyond serving their own actors — the services of
others they call, the actors they control, the channels they publish or read — declared by
the plugin itself (hook `register_nats_role`), so that `osiris nats-config` derives
least-privilege users from data and never names a plugin."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NatsGrant"]


@dataclass(frozen=True)
class NatsGrant:
    """One plugin's grant. Plugins that name the same `role` share one NATS user."""

    role: str
    """The NATS user its processes connect as (e.g. the model plugins share `models`)."""
    requests: tuple[str, ...] = ()
    """Service subjects of other plugins it requests (catalogue names)."""
    controls: tuple[str, ...] = ()
    """Actors whose `osiris.<actor>.control` it may request (pause, resume, policy ops)."""
    gathers: bool = False
    """Scatter-gathers `osiris.runtime.status` (health, supervision)."""
    reads_events: bool = False
    """Subscribes every event subject of the catalogue (a live feed such as SSE)."""
    cancels: bool = False
    """Publishes `osiris.<actor>.cancel` for the requests it gave up on."""
    publishes: tuple[str, ...] = ()
    """Subjects it publishes that no actor of it declares (a configured channel)."""
    subscribes: tuple[str, ...] = ()
    """Subjects it subscribes that no actor of it declares (a configured channel)."""
    kv_buckets: tuple[str, ...] = ()
    """JetStream KV buckets its replicas share (create, get, put, watch)."""
    description: str = ""
    runs_actors: bool = True
    """False: a grant for code this plugin adds to *another* role's processes (its gateway
    routes run in the gateway): it adds what that role calls, never this plugin's actors."""
