"""`[plugins.feedback]`: where the LanceDB tables live and how they are written."""

from __future__ import annotations

from typing import Literal

from osiris_core import PluginConfig


class FeedbackConfig(PluginConfig, frozen=True, kw_only=True):
    db_dir: str = "lancedb"
    """LanceDB directory, relative to [osiris].data_dir."""
    batch: int = 256
    """Events written per LanceDB commit (one commit = one version + one fragment)."""
    optimize_every_s: float = 60.0
    """Compaction period of every table (0 disables)."""
    unknown_transaction: Literal["accept", "reject"] = "accept"
    """Feedback whose transaction_id matches no stored proposal: keep it unlinked (and say so
    in the ack) or refuse it with 404."""
    cache_mb: int = 16
    """MiB for each of LanceDB's index and metadata caches (its defaults, 6 GiB and 1 GiB,
    fill with the manifest of every version written, so memory grew with every batch)."""
    max_query_rows: int = 10_000
    """Largest `limit` osiris.store.query accepts (rows per page; a page is also capped by the
    NATS server's max_payload, and `next_cursor` reads on)."""
