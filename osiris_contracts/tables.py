"""Names of the tables the feedback plugin keeps (DESIGN §7): use these, not string literals,
when reading them through `osiris.store.query` (`StoreQuery(table=...)`)."""

from __future__ import annotations

__all__ = ["ADVICE", "ALL", "DEADLETTER", "DGM_ARCHIVE", "FEEDBACK", "PROPOSALS", "RUNS"]

FEEDBACK = "feedback"
PROPOSALS = "proposals"
RUNS = "orchestrator_runs"
ADVICE = "advice"
DGM_ARCHIVE = "dgm_archive"
DEADLETTER = "deadletter"
"""History of dead letters (osiris.deadletter); the live set is the stream itself."""
ALL = (FEEDBACK, PROPOSALS, RUNS, ADVICE, DGM_ARCHIVE, DEADLETTER)
