"""The dgm kernel's parts on their own: diffs and the allow-list, the static policy check,
the planners' determinism, the reward and its bootstrap, the pins."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from importlib import resources
from pathlib import Path

import msgspec
import pytest
from osiris_dgm.contracts import PlanRequest, Variant
from osiris_dgm.diff import PatchError, apply_patch, make_diff
from osiris_dgm.phase import Idle, Shadow, load_phase
from osiris_dgm.planners import PlannerContext, mutate, mutate_source, null, params_lines
from osiris_dgm.reward import (
    PINNED_FILES,
    bootstrap_lower,
    make_windows,
    pin_digest,
    score_decisions,
    window_reward,
)
from osiris_orchestrator.config import RiskConfig
from osiris_orchestrator.ledger import open_trade, walk
from osiris_orchestrator.policy import PolicyViolation, check_source, default_source, load_policy

from osiris_contracts.messages import MarketTick, TradeProposal

SRC = default_source()
ALLOW = ["policy.py"]


def bar(i: int, close: float, high: float | None = None, low: float | None = None) -> MarketTick:
    return MarketTick(timestamp=f"2024-01-01T{i % 24:02d}:00:00+00:00", open=close,
                      high=high or close, low=low or close, close=close, volume=1.0)


def test_a_diff_applies_exactly_and_round_trips() -> None:
    new = SRC.replace('"min_confidence": 0.0', '"min_confidence": 0.7')
    d = make_diff(SRC, new)
    assert d.startswith("--- a/policy.py\n+++ b/policy.py\n@@")
    assert apply_patch({"policy.py": SRC}, d, ALLOW)["policy.py"] == new
    assert make_diff(SRC, SRC) == ""


@pytest.mark.parametrize(("diff", "why"), [
    ("--- a/reward.py\n+++ b/reward.py\n@@ -1 +1 @@\n-x\n+y\n", "outside the allow-list"),
    ("--- a/../osiris_dgm/reward.py\n+++ b/../osiris_dgm/reward.py\n@@ -1 +1 @@\n-x\n+y\n",
     "escapes the policy folder"),
    ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-x\n+y\n", "escapes the policy folder"),
    ("--- a/policy.py\n+++ b/other.py\n@@ -1 +1 @@\n-x\n+y\n", "renames are not allowed"),
    ("--- /dev/null\n+++ b/policy.py\n@@ -0,0 +1 @@\n+y\n", "may not create or delete"),
    ("Sure! Here is an improved policy:\n--- a/policy.py", "not a unified diff"),
    ("--- a/policy.py\n+++ b/policy.py\n@@ -1,3 +1,3 @@\n-nothing like this\n+x\n", "truncated"),
    ("--- a/policy.py\n+++ b/policy.py\n@@ -1 +1 @@\n-not the first line\n+x\n",
     "hunk does not apply"),
    ("", "no '---'/'\\+\\+\\+' file header"),
])
def test_bad_patches_are_refused_with_the_reason(diff: str, why: str) -> None:
    with pytest.raises(PatchError, match=why):
        apply_patch({"policy.py": SRC}, diff, ALLOW)


@pytest.mark.parametrize(("edit", "why"), [
    (lambda s: s + "\nimport socket\n", "import socket"),
    (lambda s: s + "\nimport os\nSECRET = os.environ.get('OSIRIS_NATS_TOKEN')\n", "import os"),
    (lambda s: s + "\nX = open('/etc/passwd').read()\n", "open is not allowed"),
    (lambda s: s + "\nX = math.__loader__\n", "attribute '__loader__'"),
    (lambda s: s.replace('    record("gate", approved=not bad, reasons=bad)\n', ""),
     'must call record\\("gate"'),
    (lambda s: s + "\ndef record(*a, **k):\n    return None\n", "may not be redefined"),
    (lambda s: s.replace("def gate(", "def gate_renamed("), "gate is not defined"),
    (lambda s: s + "\nX = eval('1')\n", "eval is not allowed"),
    (lambda s: s + "\nX = getattr(math, '__spec__')\n", "getattr is not allowed"),
    (lambda s: s + "\ndef f(:\n", "syntax error"),
    # escapes a reviewer found: frames through a generator, str.format, patching math
    (lambda s: s + "\nbox = []\ng = (box[0].gi_frame.f_back for _ in [0])\n",
     "attribute 'gi_frame'"),
    (lambda s: s + "\nX = '{0.__func__.__globals__}'.format(record)\n", "attribute 'format'"),
    (lambda s: s + "\nmath.isfinite = abs\n", "assigning attribute 'isfinite'"),
])
def test_the_static_check_names_what_a_policy_may_not_do(edit: object, why: str) -> None:
    problems = check_source(edit(SRC))  # type: ignore[operator]
    assert any(__import__("re").search(why, p) for p in problems), problems
    with pytest.raises(PolicyViolation):
        load_policy("x", edit(SRC))  # type: ignore[operator]


def test_the_default_policy_passes_and_its_values_are_checked() -> None:
    assert check_source(SRC) == []
    p = load_policy("0", SRC)
    ticks = [bar(i, 100 + i) for i in range(10)]
    market = p.summarise(ticks)
    assert p.prompt("q", market).startswith("q\nMarket: SIM 10 bars")
    prop = TradeProposal(ticker="SIM", action="open", side="LONG", new_stop_pct=2,
                         new_target_pct=4, confidence=0.7, rationale="r")
    d = p.decide(prop, market)
    assert d.approved and d.size == 1.0 and d.records == [
        {"event": "gate", "approved": True, "reasons": []}]
    nan = load_policy("n", SRC.replace('    p["size"] = PARAMS["size"]',
                                       '    p["size"] = PARAMS["size"]\n'
                                       '    p["new_stop_pct"] = float("nan")'))
    with pytest.raises(PolicyViolation, match="new_stop_pct is not finite"):
        nan.decide(prop, market)
    with pytest.raises(PolicyViolation, match=r"PARAMS\['size'\] is not finite"):
        load_policy("b", SRC.replace('"size": 1.0', '"size": 1e308 * 10'))
    inf = load_policy("i", SRC.replace('    p["size"] = PARAMS["size"]', '    p["size"] = math.inf'))
    with pytest.raises(PolicyViolation, match="size is not finite"):
        inf.decide(prop, market)
    silent = load_policy("s", SRC.replace('    record("gate", approved=not bad, reasons=bad)',
                                          '    if bad:\n        record("gate", approved=False, '
                                          'reasons=bad)'))
    with pytest.raises(PolicyViolation, match="exactly once"):
        silent.decide(prop, market)


def test_a_line_is_split_on_newlines_alone() -> None:
    """'\x0b' (and \u2028 …) is not a line break in a diff: a comment stays a comment."""
    sneaky = "--- a/policy.py\n+++ b/policy.py\n@@ -1 +1,2 @@\n " + SRC.split("\n")[0] + \
        "\n+# tidy comment\x0b+evil = 1\n"
    new = apply_patch({"policy.py": SRC}, sneaky, ALLOW)["policy.py"]
    assert "\nevil = 1" not in new and "# tidy comment\x0b+evil = 1" in new


def test_mutate_is_seeded_and_changes_one_param() -> None:
    a, note_a = mutate_source(SRC, 42)
    b, note_b = mutate_source(SRC, 42)
    assert a == b and note_a == note_b and a != SRC
    assert len([k for k, (_, v) in params_lines(a).items() if params_lines(SRC)[k][1] != v]) == 1
    assert check_source(a) == []
    assert len({mutate_source(SRC, seed)[0] for seed in range(20)}) > 1  # seeds differ
    reply = asyncio.run(mutate(PlanRequest(planner="mutate", policy_source=SRC, seed=42),
                               PlannerContext(bus=None)))
    assert apply_patch({"policy.py": SRC}, reply.diff, ALLOW)["policy.py"] == a


def test_the_null_planner_changes_only_a_comment() -> None:
    reply = asyncio.run(null(PlanRequest(planner="null", policy_source=SRC, seed=5),
                             PlannerContext(bus=None)))
    new = apply_patch({"policy.py": SRC}, reply.diff, ALLOW)["policy.py"]
    assert new != SRC and new.endswith("# calibration: 5\n")
    assert load_policy("n", new).params == load_policy("0", SRC).params


def test_ledger_closes_at_stop_first_then_target_then_horizon() -> None:
    t = open_trade("LONG", 100.0, 2.0, 4.0, 0.5, horizon=3)
    assert walk(t, [bar(1, 101, high=105, low=97)]) == -1.0  # both touched: the stop, x size
    t = open_trade("SHORT", 100.0, 2.0, 4.0, 1.0, horizon=3)
    assert walk(t, [bar(1, 99, high=100, low=95.9)]) == 4.0
    t = open_trade("LONG", 100.0, 5.0, 5.0, 1.0, horizon=2)
    assert walk(t, [bar(1, 101), bar(2, 102), bar(3, 150)]) == pytest.approx(2.0)
    assert open_trade("SIDEWAYS", 100.0, 1, 1, 1, 1) is None


def test_reward_is_drawdown_adjusted_and_deterministic() -> None:
    assert window_reward([1.0, -2.0, 3.0], 0, 0.5, 5.0) == 2.0 - 0.5 * 2.0
    assert window_reward([1.0], 1, 0.5, 5.0) == -4.0
    bars = [bar(i, 100 * math.exp(0.01 * i), high=100 * math.exp(0.01 * i) * 1.001,
                low=100 * math.exp(0.01 * i) * 0.999) for i in range(200)]
    w = make_windows(bars, every=5, holdout_fraction=0.5, cheap_fraction=0.25, sub_windows=4)
    assert len(w.ends) == 19 and w.cheap == 4 and sum(len(g) for g in w.groups) == 19
    long = {"approved": True, "size": 1.0, "proposal": {
        "ticker": "SIM", "action": "open", "side": "LONG", "new_stop_pct": 5.0,
        "new_target_pct": 2.0, "confidence": 0.9, "rationale": "r"}}
    decided = {k: long for k in range(len(w.ends))}
    risk = msgspec.convert({"min_reward_risk": 0.0}, RiskConfig)
    s1 = score_decisions(w, decided, risk, 5, 0.5, 5.0, w.groups)
    again = {int(k): v for k, v in json.loads(json.dumps(decided)).items()}
    s2 = score_decisions(w, again, risk, 5, 0.5, 5.0, w.groups)
    assert s1 == s2 and s1.trades == 19 and s1.reward == pytest.approx(19 * 2.0)
    # the operator's hard limits apply: a stop above max_stop_pct opens nothing
    strict = msgspec.convert({"max_stop_pct": 1.0, "min_reward_risk": 0.0}, RiskConfig)
    assert score_decisions(w, decided, strict, 5, 0.5, 5.0).trades == 0
    bad = {**decided, 3: {"violation": "size is not finite"}}
    assert score_decisions(w, bad, risk, 5, 0.5, 5.0).violations == 1


def test_the_bootstrap_never_promotes_a_null_change() -> None:
    """50 null iterations (identical sub-window rewards, as nop and `null` variants produce)
    and 50 with noise symmetric around 0: no promotion."""
    import random

    rng = random.Random(1)
    promoted = 0
    for i in range(50):
        _, lo, _ = bootstrap_lower([0.0] * 8, 2000, 0.95, seed=i)
        promoted += lo > 0
        noise = [rng.gauss(0, 1) for _ in range(4)]
        _, lo, _ = bootstrap_lower(noise + [-x for x in noise], 2000, 0.95, seed=i)
        promoted += lo > 0
    assert promoted == 0
    mean, lo, hi = bootstrap_lower([1.0, 2.0, 1.5, 0.5, 1.2, 0.8, 1.1, 0.9], 2000, 0.95)
    assert lo > 0 and mean == pytest.approx(1.125) and hi >= mean


def test_pins_match_the_installed_reward_code_and_catch_a_change(tmp_path: Path) -> None:
    pinned = json.loads(resources.files("osiris_dgm").joinpath("PINNED.json").read_text())
    assert pinned == pin_digest(), "run `python -m osiris_dgm.pins --write` after a deliberate change"
    # a changed byte in a copy of a pinned file changes its digest
    pkg, name = PINNED_FILES["osiris_dgm/reward.py"]
    src = Path(str(resources.files(pkg).joinpath(name)))
    copy = tmp_path / name
    shutil.copy(src, copy)
    copy.write_text(copy.read_text().replace("drawdown_weight * drawdown", "0 * drawdown"))
    import hashlib

    assert hashlib.sha256(copy.read_bytes()).hexdigest() != pinned["osiris_dgm/reward.py"]


def test_the_phase_is_one_of_three_shapes_and_reads_the_state_json_it_always_wrote() -> None:
    assert load_phase(None) == Idle(live="0")
    assert load_phase({"name": "idle", "live": "4", "hold": True}) == Idle(live="4", hold=True)
    shadow = load_phase({"name": "shadow", "candidate": "7", "live": "4", "since": 12,
                         "started": 1.5})
    assert shadow == Shadow(candidate="7", live="4", since=12, started=1.5)
    watched = {"name": "monitoring", "candidate": "7", "live": "7", "replaced": "4",
               "since": 12, "started": 1.5}
    assert msgspec.to_builtins(load_phase(watched)) == watched  # the same JSON round trip
    with pytest.raises(msgspec.ValidationError, match="replaced"):  # no half-built phase
        load_phase({"name": "monitoring", "candidate": "7", "live": "7"})
    with pytest.raises(msgspec.ValidationError):
        load_phase({"name": "promoting", "live": "7"})


def test_a_decision_outside_the_known_fates_is_refused() -> None:
    row = {"id": "3", "parent": "0", "planner": "null", "decision": "kept"}
    assert msgspec.convert(row, Variant).decision == "kept"
    with pytest.raises(msgspec.ValidationError, match="decision"):
        msgspec.convert({**row, "decision": "acepted"}, Variant)
