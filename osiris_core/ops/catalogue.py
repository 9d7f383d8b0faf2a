"""Rendering of the subject catalogue for `osiris subjects`."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from osiris_core.subjects import Catalogue, Subject

__all__ = ["catalogue_json", "catalogue_table", "schema_of"]


def schema_of(tp: type[Any] | None) -> dict[str, Any] | None:
    if tp is None:
        return None
    if tp is bytes:
        return {"type": "string", "contentEncoding": "binary"}
    return msgspec.json.schema(tp)


def _type_name(tp: type[Any] | None) -> str:
    return "-" if tp is None else getattr(tp, "__name__", str(tp))


def catalogue_table(cat: Catalogue) -> str:
    rows = [("SUBJECT", "KIND", "REQUEST/EVENT", "REPLY", "OWNER", "DURABLE (STREAM)")]
    for s in cat:
        rows.append((s.name, s.kind, _type_name(s.request), _type_name(s.reply), s.owner,
                     f"yes ({s.stream})" if s.durable else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def subject_json(s: Subject) -> dict[str, Any]:
    return {
        "subject": s.name, "kind": s.kind, "owner": s.owner, "durable": s.durable,
        "stream": s.stream, "description": s.description,
        "request_schema": schema_of(s.request), "reply_schema": schema_of(s.reply),
    }


def catalogue_json(cat: Catalogue) -> str:
    return json.dumps([subject_json(s) for s in cat], indent=2, sort_keys=True)
