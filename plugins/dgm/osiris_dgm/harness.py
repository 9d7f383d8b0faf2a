"""The sandboxed side of an evaluation (`python -I -m osiris_dgm.harness`, in a subprocess
with a clean environment, no network and resource limits; see `sandbox.py`).

Reads one JSON request on stdin: the variant's source, the query and the market batches of
the decision points to replay, and the cached phi3 replies keyed by prompt hash. Loads the
policy through the orchestrator's own `Policy` (the live code path) and writes on stdout,
per decision point, the prompt, and — when phi3's reply to it is cached — the decision (or
the violation). Before the policy runs, an audit hook refuses sockets, processes, writes,
ctypes and new imports other than `math` for the rest of the process's life.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import msgspec
from osiris_orchestrator.policy import Policy, PolicyViolation, load_policy

from osiris_contracts.messages import MarketTick, TradeProposal

ALLOWED_IMPORTS = {"math"}
BLOCKED_PREFIXES = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn",
                    "os.fork", "os.spawn", "os.kill", "os.remove", "os.rename", "os.rmdir",
                    "os.mkdir", "os.chmod", "os.chown", "os.symlink", "os.link", "os.truncate",
                    "os.putenv", "os.unsetenv", "ctypes.", "shutil.", "urllib.", "http.",
                    "ftplib.", "smtplib.", "webbrowser.", "pty.", "sys.addaudithook",
                    "sys.setrecursionlimit", "builtins.input", "code.")


def prompt_key(model_key: str, prompt: str) -> str:
    return hashlib.sha256(f"{model_key}\n{prompt}".encode()).hexdigest()


def _guard(event: str, args: tuple[Any, ...]) -> None:
    if event.startswith(BLOCKED_PREFIXES):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":  # the policy needs no file at all: reads and writes alike
        raise PermissionError(f"sandbox: opening {args[0]!r} is not allowed")
    if event == "import" and args[0] not in sys.modules and args[0] not in ALLOWED_IMPORTS:
        raise PermissionError(f"sandbox: import {args[0]} is not allowed")


def decide(policy: Policy, query: str, bars: list[MarketTick], replies: dict[str, Any],
           model_key: str) -> dict[str, Any]:
    try:
        market = policy.summarise(bars)
        prompt = policy.prompt(query, market)
    except PolicyViolation as e:
        return {"violation": str(e)}
    key = prompt_key(model_key, prompt)
    out: dict[str, Any] = {"prompt": prompt, "key": key}
    reply = replies.get(key)
    if reply is None:
        out["missing"] = True
        return out
    if "error" in reply:  # phi3 could not answer this prompt: no decision, as live
        out["no_proposal"] = str(reply["error"])[:300]
        return out
    try:
        d = policy.decide(msgspec.convert(reply, TradeProposal), market)
    except PolicyViolation as e:
        out["violation"] = str(e)
        return out
    out.update(approved=d.approved, size=d.size, reasons=d.reasons,
               proposal=msgspec.structs.asdict(d.proposal),
               records=len([r for r in d.records if r.get("event") == "gate"]))
    return out


def main() -> None:
    req = json.loads(sys.stdin.buffer.read())
    batches = {int(k): [msgspec.convert(b, MarketTick) for b in v]
               for k, v in req["batches"].items()}
    replies: dict[str, Any] = req.get("replies", {})
    query, model_key = req["query"], req["model_key"]
    sys.addaudithook(_guard)
    try:
        policy = load_policy(req["variant"], req["source"])
    except PolicyViolation as e:
        sys.stdout.write(json.dumps({"load_error": str(e)}))
        return
    results = {str(k): decide(policy, query, batches[k], replies, model_key)
               for k in sorted(batches)}
    sys.stdout.write(json.dumps({"results": results}, allow_nan=True))


if __name__ == "__main__":
    main()
