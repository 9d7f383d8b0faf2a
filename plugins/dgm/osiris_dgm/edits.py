"""The typed edit language the `llm` planner's model writes in: built from the parent policy
each time as a Lark grammar (its PARAMS keys, values inside their ranges, the gate's checks),
so that every sentence the grammar admits compiles deterministically to a source and a
unified diff that applies and passes the static check.

A sentence is one or two operations, then a reason::

    scale{stop_vol_mult, 1.5}; add_check{market.volatility_pct < 2.0}
    why: wider stops, no trades in wild markets

- `scale{KEY, FACTOR}` multiplies a non-zero value (only factors that stay in range);
- `set{KEY, VALUE}` sets a value from a grid inside the key's range;
- `off{KEY}` sets it to 0, which switches its check off (never `size`);
- `add_check{FIELD CMP NUMBER}` makes the gate reject a proposal unless the comparison holds
  (inserted before the gate's `record("gate", …)`; offered only when the gate has that call
  with `reasons=` a list it built, and not when the parent has that very check already).

Every operation is a whole literal of the grammar, so the model can only write what the
parent allows; two operations name different slots in a fixed order, so no edit undoes the
other and every sentence changes the source.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from .diff import make_diff

__all__ = ["CHECK_FIELDS", "Edit", "EditError", "EditSpace", "FACTORS", "NEVER_OFF", "Op",
           "RANGES", "describe_change", "params_lines", "with_value"]

# (low, high, integer?) of each shipped parameter; 0 switches a check off
RANGES: dict[str, tuple[float, float, bool]] = {
    "lookback": (3, 10, True), "min_confidence": (0.3, 0.95, False),
    "min_reward_risk": (0.5, 4.0, False), "max_volatility_pct": (0.1, 3.0, False),
    "stop_vol_mult": (0.25, 4.0, False), "target_rr": (0.5, 5.0, False),
    "trend_filter_pct": (0.05, 3.0, False), "size": (0.1, 1.0, False),
}
NEVER_OFF = frozenset({"size"})
FACTORS = (0.5, 0.8, 1.25, 1.5, 2.0)
SET_POINTS = 7
"""Values `set` offers for a float key: geometric steps from its low to its high end."""

# field as the model writes it → (the expression in gate(), the numbers it may compare with)
CHECK_FIELDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "proposal.confidence": ('proposal["confidence"]', (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
    "proposal.new_stop_pct": ('proposal["new_stop_pct"]', (0.25, 0.5, 1.0, 2.0, 3.0, 5.0)),
    "proposal.new_target_pct": ('proposal["new_target_pct"]', (0.5, 1.0, 2.0, 3.0, 5.0, 8.0)),
    "market.return_pct": ('market.get("return_pct", 0.0)', (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)),
    "market.volatility_pct": ('market.get("volatility_pct", 0.0)', (0.1, 0.2, 0.5, 1.0, 2.0, 3.0)),
}
NEGATE = {"<": ">=", ">": "<="}
CHECK_REASON = "policy: needs "
"""The reason an added check gives: also how `describe_change` finds it again."""
WHY = r"/[a-z0-9 ,.%+-]{1,80}/"
WHY_PREFIX = "\nwhy: "
_CHECK = re.compile(re.escape(CHECK_REASON) + r'([a-z_.]+ [<>] -?[0-9.]+)"')


class EditError(ValueError):
    """A reply that is not a sentence of the parent's edit language (says why)."""


@dataclass(frozen=True)
class Op:
    """One operation as written (`text`) and what it does: a PARAMS key set to `new`
    (scale, set, off) or a check `field cmp number` added to the gate."""

    kind: str
    key: str
    text: str
    new: float = 0.0
    cmp: str = ""
    number: float = 0.0


@dataclass(frozen=True)
class Edit:
    ops: tuple[Op, ...]
    why: str

    @property
    def text(self) -> str:
        return "; ".join(op.text for op in self.ops)


def params_lines(source: str) -> dict[str, tuple[int, float]]:
    """PARAMS key → (line number, value), for a PARAMS dict literal written one key a line."""
    tree = ast.parse(source)
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PARAMS"
                                                 for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            out: dict[str, tuple[int, float]] = {}
            for k, v in zip(node.value.keys, node.value.values, strict=True):
                if (isinstance(k, ast.Constant) and isinstance(k.value, str)
                        and isinstance(v, ast.Constant) and isinstance(v.value, (int, float))
                        and not isinstance(v.value, bool) and v.lineno == v.end_lineno
                        and k.lineno == v.lineno):
                    out[k.value] = (v.lineno, float(v.value))
            # a line holding two keys cannot be rewritten for one of them: neither is offered
            lines = [ln for ln, _ in out.values()]
            return {k: lv for k, lv in out.items() if lines.count(lv[0]) == 1}
    return {}


def with_value(line: str, literal: str) -> str:
    """A `"key": number,` line of PARAMS with the number written as `literal`."""
    def put(m: re.Match[str]) -> str:
        return m.group(1) + literal

    return re.sub(r"(:\s*)(-?(?:[0-9][0-9_.eE+-]*|\.[0-9][0-9_eE+-]*))", put, line, count=1)


def check_place(source: str) -> tuple[int, int, str] | None:
    """(line, indent, reasons list) of the gate's top-level `record("gate", …, reasons=NAME)`
    when NAME is a list the gate starts empty: where a check is inserted; None if absent."""
    tree = ast.parse(source)
    gate = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "gate"),
                None)
    if gate is None:
        return None
    lists: set[str] = set()
    for stmt in gate.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name) and isinstance(stmt.value, ast.List)
                and not stmt.value.elts):
            lists.add(stmt.targets[0].id)
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == "record" and call.args
                and isinstance(call.args[0], ast.Constant) and call.args[0].value == "gate"):
            reasons = next((k.value for k in call.keywords if k.arg == "reasons"), None)
            if isinstance(reasons, ast.Name) and reasons.id in lists:
                return stmt.lineno, stmt.col_offset, reasons.id
            return None
    return None


def _num(value: float, integer: bool) -> str:
    return repr(int(value)) if integer else repr(float(value))


def _set_values(low: float, high: float, integer: bool) -> list[float]:
    if integer:
        return [float(v) for v in range(int(low), int(high) + 1)]
    steps = [low * (high / low) ** (i / (SET_POINTS - 1)) for i in range(SET_POINTS)]
    return sorted({round(v, 2) for v in steps})


@dataclass
class EditSpace:
    """The edits one parent allows: per slot (a PARAMS key, then "check") its operations."""

    slots: dict[str, list[Op]] = field(default_factory=dict)
    integer: dict[str, bool] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    place: tuple[int, int, str] | None = None

    @classmethod
    def from_source(cls, source: str) -> EditSpace:
        space = cls(place=check_place(source))
        for key, (_, value) in params_lines(source).items():
            if key not in RANGES:
                continue  # a key the language has no range for is left alone
            low, high, integer = RANGES[key]
            space.integer[key], space.values[key] = integer, value
            ops: list[Op] = []
            if value != 0:
                for f in FACTORS:
                    new = float(round(value * f)) if integer else round(value * f, 3)
                    if low <= new <= high and new != value:
                        ops.append(Op("scale", key, f"scale{{{key}, {f!r}}}", new=new))
            ops += [Op("set", key, f"set{{{key}, {_num(v, integer)}}}", new=v)
                    for v in _set_values(low, high, integer) if v != value]
            if value != 0 and key not in NEVER_OFF:
                ops.append(Op("off", key, f"off{{{key}}}", new=0.0))
            if ops:
                space.slots[key] = list({op.text: op for op in ops}.values())
        if space.place is not None:
            present = set(_CHECK.findall(source))  # the same check twice would change nothing
            space.slots["check"] = [
                Op("add_check", name, f"add_check{{{name} {cmp} {n!r}}}", cmp=cmp, number=n)
                for name, (_, numbers) in CHECK_FIELDS.items() for cmp in ("<", ">")
                for n in numbers if f"{name} {cmp} {n!r}" not in present]
        return space

    @property
    def by_text(self) -> dict[str, tuple[int, Op]]:
        return {op.text: (i, op) for i, ops in enumerate(self.slots.values()) for op in ops}

    def grammar(self) -> str:
        """The Lark grammar (llguidance's dialect) of this parent's edits."""
        names = [f"s{i}" for i in range(len(self.slots))]
        if not names:
            raise EditError("the policy has no PARAMS key or gate check the language can edit")
        firsts = []
        lines = []
        for i, name in enumerate(names):
            firsts.append(name)
            if i + 1 < len(names):
                firsts.append(f'{name} "; " t{i}')
                lines.append(f"t{i}: " + " | ".join(names[i + 1:]))
        lines = ["start: edit " + _lit(WHY_PREFIX) + " WHY", "edit: " + " | ".join(firsts),
                 *lines]
        for name, ops in zip(names, self.slots.values(), strict=True):
            lines.append(f"{name}: " + " | ".join(_lit(op.text) for op in ops))
        lines.append(f"WHY: {WHY}")
        return "\n".join(lines) + "\n"

    def parse(self, text: str) -> Edit:
        """The edit a reply writes (raises EditError naming what is not in the language)."""
        head, sep, why = text.partition(WHY_PREFIX)
        if not sep or not re.fullmatch(WHY[1:-1], why):
            raise EditError(f"no 'why: …' line of 1–80 plain characters after the edits: "
                            f"{text[-60:]!r}")
        known = self.by_text
        ops: list[Op] = []
        last = -1
        for part in head.split("; "):
            if part not in known:
                raise EditError(f"{part[:60]!r} is not an edit this policy allows")
            slot, op = known[part]
            if slot <= last:
                raise EditError(f"{part!r}: a second edit must name a later key than the first")
            last = slot
            ops.append(op)
        if not 1 <= len(ops) <= 2:
            raise EditError(f"{len(ops)} edits (1 or 2)")
        return Edit(tuple(ops), why)

    def compile(self, source: str, edit: Edit) -> str:
        """The parent source with the edit made (the same edit, the same source)."""
        lines = source.splitlines(keepends=True)
        params = params_lines(source)
        inserts: list[str] = []
        for op in edit.ops:
            if op.kind == "add_check":
                if self.place is None:
                    raise EditError("this policy's gate has no place for a check")
                expr = CHECK_FIELDS[op.key][0]
                indent = " " * self.place[1]
                inserts += [f"{indent}if {expr} {NEGATE[op.cmp]} {op.number!r}:\n",
                            f'{indent}    {self.place[2]}.append("{CHECK_REASON}{op.key} '
                            f'{op.cmp} {op.number!r}")\n']
                continue
            lineno = params[op.key][0]
            literal = _num(op.new, self.integer[op.key])
            line = lines[lineno - 1]
            changed = with_value(line, literal)
            if changed == line:
                raise EditError(f"PARAMS[{op.key!r}] is not a plain number on one line")
            lines[lineno - 1] = changed
        if inserts and self.place is not None:
            at = self.place[0] - 1
            lines[at:at] = inserts
        return "".join(lines)

    def diff(self, source: str, edit: Edit, path: str = "policy.py") -> tuple[str, str]:
        """(new source, unified diff against `source`)."""
        new = self.compile(source, edit)
        return new, make_diff(source, new, path)

    def table(self) -> str:
        """PARAMS now with their ranges, one line each (the prompt's table)."""
        out = []
        for key, value in self.values.items():
            low, high, _ = RANGES[key]
            out.append(f"{key} {value:g} [{low:g}-{high:g}{', never 0' if key in NEVER_OFF else ''}]")
        return "\n".join(out)


def _lit(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def describe_change(parent: str, child: str) -> str:
    """A child's change from its parent in the edit language (PARAMS values as `set`/`off`,
    checks as `add_check`), whichever planner made it; "a code change" for anything else."""
    try:
        before, after = params_lines(parent), params_lines(child)
    except SyntaxError:
        return "a code change"
    parts = []
    for key in sorted(after):
        old = before.get(key, (0, None))[1]
        new = after[key][1]
        if old != new:
            integer = RANGES.get(key, (0, 0, False))[2]
            parts.append(f"off{{{key}}}" if new == 0 and old else f"set{{{key}, {_num(new, integer)}}}")
    added = _CHECK.findall(child)
    for found in _CHECK.findall(parent):
        if found in added:
            added.remove(found)
    parts += [f"add_check{{{c}}}" for c in added]
    return "; ".join(parts) if parts else "a code change"
