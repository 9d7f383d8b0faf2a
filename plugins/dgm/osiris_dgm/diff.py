"""Unified diffs: made with difflib, applied strictly (every context and removed line must
match), and refused when they touch anything outside the allow-list."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

__all__ = ["PatchError", "apply_patch", "make_diff", "parse_patch"]

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchError(ValueError):
    """A diff that is malformed, does not apply, or touches what it may not."""


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_len: int
    lines: list[str] = field(default_factory=list)


@dataclass
class FilePatch:
    path: str
    hunks: list[Hunk] = field(default_factory=list)


def make_diff(old: str, new: str, path: str = "policy.py") -> str:
    """A unified diff from `old` to `new` ('' when they are equal)."""
    return "".join(difflib.unified_diff(_keep(old), _keep(new),
                                        fromfile=f"a/{path}", tofile=f"b/{path}"))


def _lines(text: str) -> list[str]:
    """Lines split on '\n' alone (str.splitlines also splits on \x0b, \x1c, \u2028 …, which
    would let one visible line apply as two)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _keep(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _clean(header: str) -> str:
    name = header.split("\t")[0].strip()
    if name == "/dev/null":
        return name
    if name.startswith(("a/", "b/")):
        name = name[2:]
    return name


def _safe_path(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or name.startswith("~") or "\\" in name:
        raise PatchError(f"path {name!r} escapes the policy folder")
    return str(p)


def parse_patch(text: str) -> list[FilePatch]:
    """Every file section of a unified diff (raises PatchError saying what is malformed)."""
    lines = [ln.removesuffix("\r") for ln in _lines(text)]
    files: list[FilePatch] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- "):
            if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
                raise PatchError(f"line {i + 1}: '---' header without a '+++' line")
            old, new = _clean(line[4:]), _clean(lines[i + 1][4:])
            if old == "/dev/null" or new == "/dev/null":
                raise PatchError(f"line {i + 1}: a patch may not create or delete files "
                                 f"({old} → {new})")
            if _safe_path(old) != _safe_path(new):
                raise PatchError(f"line {i + 1}: renames are not allowed ({old} → {new})")
            files.append(FilePatch(_safe_path(new)))
            i += 2
            continue
        m = _HUNK.match(line)
        if m:
            if not files:
                raise PatchError(f"line {i + 1}: hunk before any '---'/'+++' header")
            hunk = Hunk(int(m.group(1)), int(m.group(2) or 1), int(m.group(4) or 1))
            i += 1
            old_seen = new_seen = 0
            while i < len(lines) and (old_seen < hunk.old_len or new_seen < hunk.new_len):
                body = lines[i]
                tag = body[:1] if body else " "
                if tag not in " +-\\":
                    raise PatchError(f"line {i + 1}: unexpected {body[:40]!r} inside a hunk")
                if tag != "\\":
                    hunk.lines.append(body if body else " ")
                    old_seen += tag in " -"
                    new_seen += tag in " +"
                i += 1
            if old_seen != hunk.old_len or new_seen != hunk.new_len:
                raise PatchError(f"hunk @@ -{hunk.old_start},{hunk.old_len} is truncated "
                                 f"({old_seen}/{hunk.old_len} old, {new_seen}/{hunk.new_len} new lines)")
            files[-1].hunks.append(hunk)
            continue
        if line.startswith(("diff ", "index ", "new file", "deleted file", "similarity",
                            "rename ", "old mode", "new mode")) or not line.strip():
            if line.startswith(("new file", "deleted file", "rename ")):
                raise PatchError(f"line {i + 1}: {line.strip()!r} is not allowed")
            i += 1
            continue
        if not files:  # prose before the diff (an LLM's preamble) is not a diff
            raise PatchError(f"line {i + 1}: not a unified diff: {line[:60]!r}")
        raise PatchError(f"line {i + 1}: unexpected {line[:60]!r} outside a hunk")
    if not files:
        raise PatchError("no '---'/'+++' file header: not a unified diff")
    for f in files:
        if not f.hunks:
            raise PatchError(f"{f.path}: header without hunks")
    return files


def apply_patch(sources: dict[str, str], text: str, allow: list[str]) -> dict[str, str]:
    """`sources` (path → text) with the diff applied to a copy.

    Raises PatchError before changing anything when a file is outside `allow`, a hunk does
    not match, or the diff is malformed."""
    files = parse_patch(text)
    outside = sorted({f.path for f in files if f.path not in allow})
    if outside:
        raise PatchError(f"patch touches {', '.join(outside)}: outside the allow-list "
                         f"({', '.join(allow)})")
    out = dict(sources)
    for f in files:
        if f.path not in out:
            raise PatchError(f"{f.path}: no such file in the policy folder")
        old = _lines(out[f.path])
        new: list[str] = []
        pos = 0
        for h in f.hunks:
            start = h.old_start - 1 if h.old_len else h.old_start
            if start < pos or start > len(old):
                raise PatchError(f"{f.path}: hunk @@ -{h.old_start} is out of order or range")
            new.extend(old[pos:start])
            pos = start
            for body in h.lines:
                tag, content = body[0], body[1:]
                if tag in " -":
                    if pos >= len(old) or old[pos] != content:
                        got = old[pos] if pos < len(old) else "<end of file>"
                        raise PatchError(f"{f.path}:{pos + 1}: hunk does not apply: expected "
                                         f"{content[:60]!r}, found {got[:60]!r}")
                    pos += 1
                    if tag == " ":
                        new.append(content)
                else:
                    new.append(content)
        new.extend(old[pos:])
        out[f.path] = "\n".join(new) + ("\n" if out[f.path].endswith("\n") or not old else "")
    return out
