"""phi3's own subject: unguided completion (parity tests, benchmarks, raw use)."""

from __future__ import annotations

import msgspec

from osiris_core.contracts import GenerateRequest
from osiris_core.subjects import Subject


class Phi3Completion(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Reply of `osiris.phi3.complete`: the text and the exact token ids generated."""

    generated_text: str
    token_ids: list[int]
    usage: dict[str, int]


PHI3_COMPLETE = Subject(
    "osiris.phi3.complete", "service", "phi3", GenerateRequest, Phi3Completion,
    description="unguided completion of the raw prompt, with token ids (parity, benchmarks)",
)
