"""`[plugins.gateway]`: where the gateway listens and how hard its edge is."""

from __future__ import annotations

from typing import ClassVar

from osiris_core import PluginConfig

ONE_MB = 1024 * 1024


class GatewayConfig(PluginConfig, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    """Bind address. Loopback by default: expose it deliberately (and set `api_key`)."""
    port: int = 8000
    server: str = "uvicorn"
    """Inside `osiris run`: `uvicorn` (httptools + the runtime's uvloop, on the actor's own
    loop). Standalone (`osiris gateway`) always uses granian."""
    workers: int = 1
    """Standalone granian worker processes."""

    api_key: str = ""
    """Bearer key required on every route but /health when set (env OSIRIS_API_KEY)."""
    admin_key: str = ""
    """Key for control routes (pause/resume/restart/adapters); empty disables them
    (env OSIRIS_ADMIN_KEY)."""
    cors_origins: list[str] = []
    """Origins allowed by CORS; empty: no CORS headers at all."""
    max_body_bytes: int = ONE_MB
    """Larger request bodies get 413."""

    rate_limit_per_s: float = 5.0
    """Sustained generation requests per second per client (token bucket); 0 turns it off."""
    rate_limit_burst: int = 20
    """Generation requests a client may send at once before the sustained rate applies."""

    generate_timeout_s: float = 120.0
    """How long a generation, proposal or speech request waits for its actor (then 504)."""
    request_timeout_s: float = 10.0
    """How long other routes (feedback, store, control) wait for their actor."""
    health_cache_s: float = 0.5
    """/health answers from a snapshot at most this old (polling every second stays cheap)."""
    health_window_s: float = 0.25
    """How long /health waits for runtime processes to report."""
    sse_ping_s: float = 15.0
    """Comment frames on idle SSE streams, so dead clients are noticed."""
    event_subjects: list[str] = []
    """Subjects `/events` may stream; empty: every event subject of the catalogue."""

    __env__: ClassVar[dict[str, str]] = {
        "api_key": "OSIRIS_API_KEY",
        "admin_key": "OSIRIS_ADMIN_KEY",
    }
