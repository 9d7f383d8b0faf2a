"""Loading and calling a policy module (the part of the orchestrator the dgm kernel may change).

A policy is one Python source file (variant 0 is `policies/default.py`). It is checked
statically before it is ever run (`check_source`: only `math` may be imported, no dunder
attributes, no eval/exec/open/getattr…, the four functions and `PARAMS` defined, the
`record("gate", …)` audit call present), executed with a reduced set of builtins, and every
value it returns is validated (`PolicyViolation` names what was wrong: a NaN stop, a size
outside 0–1, a gate that did not record its decision …). The same `Policy` object decides
live runs in the orchestrator and backtests in the dgm sandbox.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import math
import types
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgspec

from osiris_contracts.messages import MarketTick, TradeProposal

__all__ = ["Decision", "Policy", "PolicyViolation", "check_source", "default_source",
           "load_policy"]

ALLOWED_IMPORTS = frozenset({"math"})
REQUIRED = ("PARAMS", "summarise", "prompt", "postprocess", "gate")
FORBIDDEN_NAMES = frozenset({
    "__import__", "eval", "exec", "compile", "open", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "input", "breakpoint", "exit", "quit", "memoryview", "object",
    "type", "super", "classmethod", "staticmethod", "property", "help", "dir", "id",
})
SAFE_BUILTINS = ("abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "int",
                 "isinstance", "len", "list", "map", "max", "min", "range", "reversed", "round",
                 "set", "sorted", "str", "sum", "tuple", "zip", "ValueError", "KeyError",
                 "TypeError", "ZeroDivisionError", "ArithmeticError", "Exception", "True",
                 "False", "None")
MATH_NAMES = frozenset(n for n in dir(math) if not n.startswith("_"))
SAFE_ATTRIBUTES = frozenset({
    # dict / list / str methods a policy needs; everything else (format, gi_frame, f_back …)
    # is refused, so no attribute chain can reach a frame, a module or the real builtins
    "get", "items", "keys", "values", "copy", "setdefault", "pop", "update", "append",
    "extend", "insert", "index", "count", "sort", "upper", "lower", "strip", "lstrip",
    "rstrip", "startswith", "endswith", "split", "join", "replace", "isdigit", "isalpha",
    "title", "capitalize",
}) | MATH_NAMES
MAX_PROMPT = 16_000
MAX_SOURCE = 64_000
FIELDS = ("ticker", "action", "side", "new_stop_pct", "new_target_pct", "confidence",
          "rationale")


class PolicyViolation(Exception):
    """A policy that cannot be used, or returned something it must not; the message says what."""


@dataclass
class Decision:
    """What a policy made of one phi3 proposal."""

    proposal: TradeProposal
    size: float
    approved: bool
    reasons: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)


def default_source() -> str:
    """Variant 0: the policy shipped with the orchestrator."""
    return resources.files("osiris_orchestrator").joinpath("policies/default.py").read_text()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_source(source: str) -> list[str]:
    """Every reason this source may not be loaded as a policy (empty: it may)."""
    if len(source) > MAX_SOURCE:
        return [f"policy source is {len(source)} characters (at most {MAX_SOURCE})"]
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"syntax error line {e.lineno}: {e.msg}"]
    problems: list[str] = []
    defined: set[str] = set()
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name not in ALLOWED_IMPORTS:
                    problems.append(f"{where}: import {a.name} (only {sorted(ALLOWED_IMPORTS)})")
        elif isinstance(node, ast.ImportFrom):
            if node.module not in ALLOWED_IMPORTS or node.level:
                problems.append(f"{where}: from {node.module} import … "
                                f"(only {sorted(ALLOWED_IMPORTS)})")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            problems.append(f"{where}: {node.id} is not allowed in a policy")
        elif isinstance(node, ast.Name) and node.id == "record" and not isinstance(node.ctx, ast.Load):
            problems.append(f"{where}: `record` may not be rebound")
        elif isinstance(node, ast.Attribute) and node.attr not in SAFE_ATTRIBUTES:
            problems.append(f"{where}: attribute {node.attr!r} is not allowed in a policy")
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
            problems.append(f"{where}: assigning attribute {node.attr!r} is not allowed")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            problems.append(f"{where}: global/nonlocal is not allowed in a policy")
        elif isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.Yield, ast.YieldFrom,
                               ast.ClassDef, ast.Lambda)):
            problems.append(f"{where}: {type(node).__name__} is not allowed in a policy")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and "__" in node.value and node.value.strip("_").isidentifier():
            problems.append(f"{where}: string {node.value!r} is not allowed in a policy")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            defined.add(node.name)
            if node.name == "record":
                problems.append(f"line {node.lineno}: `record` may not be redefined")
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    problems += [f"{name} is not defined at module level" for name in REQUIRED
                 if name not in defined]
    gate = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "gate"),
                None)
    if gate is not None and not any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "record"
            and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value == "gate"
            for n in ast.walk(gate)):
        problems.append('gate() must call record("gate", approved=…, reasons=…): '
                        "the audit trail of every decision")
    return problems


def _import(name: str, *args: Any, **kwargs: Any) -> Any:
    """A policy's `import math` gets its own copy of math's functions: patching it changes
    nothing outside the policy (nor the validation below)."""
    if name not in ALLOWED_IMPORTS:
        raise ImportError(f"a policy may import only {sorted(ALLOWED_IMPORTS)}, not {name!r}")
    return types.SimpleNamespace(**{n: getattr(math, n) for n in MATH_NAMES})


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyViolation(f"{name} is {type(value).__name__}, not a number")
    if not math.isfinite(value):
        raise PolicyViolation(f"{name} is not finite ({value!r})")
    return float(value)


class Policy:
    """One loaded policy variant. Not thread-safe: one call at a time (records are per call)."""

    def __init__(self, variant: str, source: str) -> None:
        problems = check_source(source)
        if problems:
            raise PolicyViolation(f"policy {variant} rejected: " + "; ".join(problems))
        self.variant = variant
        self.source = source
        self.sha256 = sha256(source)
        self._records: list[dict[str, Any]] = []
        module = types.ModuleType(f"osiris_policy_{variant}")
        safe = {k: getattr(builtins, k) for k in SAFE_BUILTINS}
        safe["__import__"] = _import
        module.__dict__["__builtins__"] = safe
        try:
            exec(compile(source, f"<policy {variant}>", "exec"), module.__dict__)  # noqa: S102
        except Exception as e:  # noqa: BLE001 - any failure is the variant's
            raise PolicyViolation(f"policy {variant} failed to load: {type(e).__name__}: {e}") \
                from None
        module.__dict__["record"] = self._record
        self.module = module
        params = module.__dict__.get("PARAMS")
        if not isinstance(params, dict):
            raise PolicyViolation(f"policy {variant}: PARAMS is not a dict")
        for k, v in params.items():
            _finite(f"PARAMS[{k!r}]", v)

    def _record(self, event: str, **fields: Any) -> None:
        self._records.append({"event": str(event), **fields})

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return self.module.__dict__[fn](*args)
        except PolicyViolation:
            raise
        except RecursionError:
            raise PolicyViolation(f"{fn}() recursed too deep") from None
        except Exception as e:  # noqa: BLE001 - a policy's own bug is a violation
            raise PolicyViolation(f"{fn}() raised {type(e).__name__}: {e}") from None

    @property
    def params(self) -> dict[str, float]:
        return dict(self.module.__dict__["PARAMS"])

    def summarise(self, ticks: list[MarketTick]) -> dict[str, Any]:
        bars = [msgspec.structs.asdict(t) for t in ticks]
        market = self._call("summarise", bars)
        if not isinstance(market, dict):
            raise PolicyViolation(f"summarise() returned {type(market).__name__}, not a dict")
        try:
            msgspec.json.encode(market)
        except (TypeError, ValueError, OverflowError) as e:
            raise PolicyViolation(f"summarise() returned something not JSON: {e}") from None
        for k, v in market.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise PolicyViolation(f"summarise() returned non-finite {k} ({v!r})")
        return market

    def prompt(self, query: str, market: dict[str, Any]) -> str:
        text = self._call("prompt", query, market)
        if not isinstance(text, str) or not text.strip():
            raise PolicyViolation("prompt() must return a non-empty string")
        if len(text) > MAX_PROMPT:
            raise PolicyViolation(f"prompt() returned {len(text)} characters (at most {MAX_PROMPT})")
        return text

    def decide(self, proposal: TradeProposal, market: dict[str, Any]) -> Decision:
        """postprocess, then gate: the proposal as the policy leaves it, its size and verdict."""
        self._records = []
        post = self._call("postprocess", msgspec.structs.asdict(proposal), dict(market))
        if not isinstance(post, dict):
            raise PolicyViolation(f"postprocess() returned {type(post).__name__}, not a dict")
        size = _finite("size", post.get("size", 1.0))
        if not 0.0 <= size <= 1.0:
            raise PolicyViolation(f"size {size:g} outside [0, 1]")
        for name in ("new_stop_pct", "new_target_pct", "confidence"):
            _finite(name, post.get(name))
        try:
            adjusted = msgspec.convert({k: post.get(k) for k in FIELDS}, TradeProposal)
        except msgspec.ValidationError as e:
            raise PolicyViolation(f"postprocess() returned an invalid proposal: {e}") from None
        verdict = self._call("gate", msgspec.structs.asdict(adjusted), dict(market))
        if (not isinstance(verdict, tuple) or len(verdict) != 2 or not isinstance(verdict[0], bool)
                or not isinstance(verdict[1], list)
                or not all(isinstance(r, str) for r in verdict[1])):
            raise PolicyViolation("gate() must return (bool, list of str)")
        gates = [r for r in self._records if r.get("event") == "gate"]
        if len(gates) != 1 or gates[0].get("approved") is not verdict[0]:
            raise PolicyViolation('gate() must record("gate", approved=…, reasons=…) exactly once, '
                                  "with its verdict")
        return Decision(proposal=adjusted, size=size, approved=bool(verdict[0]),
                        reasons=[r[:500] for r in verdict[1][:20]], records=list(self._records))


def load_policy(variant: str, source: str) -> Policy:
    """Check and load a policy source (raises PolicyViolation with every reason)."""
    return Policy(variant, source)
