"""The typed edit language (no model): the grammar built from a parent admits only valid keys
and values, and every sentence it admits — drawn at random from the Lark text itself —
compiles to a source and a diff that applies, passes the static check, loads and decides."""

from __future__ import annotations

import ast
import asyncio
import random
import re
from pathlib import Path

import pytest
from osiris_dgm.diff import apply_patch
from osiris_dgm.edits import NEVER_OFF, RANGES, EditError, EditSpace, describe_change
from osiris_dgm.lint import lint_scores
from osiris_dgm.planners import edit_prompt
from osiris_dgm.sandbox import Limits
from osiris_dgm.testing import all_checks_on
from osiris_orchestrator.policy import check_source, default_source, load_policy

from osiris_contracts.messages import TradeProposal

SRC = default_source()
ALL_ON = all_checks_on(SRC)
"""A parent with every check on: scale and off are offered for every key."""
NO_PLACE = SRC.replace("    record(\"gate\", approved=not bad, reasons=bad)\n",
                       "    record(\"gate\", approved=not bad, reasons=list(bad))\n")
"""A gate whose reasons are not the list it built: no place for add_check."""
PARENTS = {"default": SRC, "all-on": ALL_ON, "no-place": NO_PLACE}


# --- a reader of the grammar's Lark text (the subset the builder writes) ---------------------
def lark_rules(text: str) -> dict[str, list[list[str]]]:
    rules: dict[str, list[list[str]]] = {}
    for line in text.strip().splitlines():
        name, _, body = line.partition(": ")
        if name.isupper():
            rules[name] = [[body]]  # a terminal: its regex
            continue
        alts = []
        for alt in re.split(r' \| (?=(?:[^"]*"[^"]*")*[^"]*$)', body):
            alts.append(re.findall(r'"(?:\\.|[^"\\])*"|[A-Za-z_][A-Za-z0-9_]*', alt))
        rules[name] = alts
    return rules


def sample(rules: dict[str, list[list[str]]], rng: random.Random, symbol: str = "start") -> str:
    if symbol.startswith('"'):
        value = ast.literal_eval(symbol)
        assert isinstance(value, str)
        return value
    if symbol.isupper():  # /[class]{m,n}/
        m = re.fullmatch(r"/\[(.+)\]\{(\d+),(\d+)\}/", rules[symbol][0][0])
        assert m, rules[symbol]
        chars = re.sub(r"a-z", "abcdefghijklmnopqrstuvwxyz", m.group(1))
        chars = chars.replace("0-9", "0123456789")
        return "".join(rng.choice(chars) for _ in range(rng.randint(int(m.group(2)), int(m.group(3)))))
    return "".join(sample(rules, rng, s) for s in rng.choice(rules[symbol]))


def one_op_sentences(space: EditSpace) -> list[str]:
    rules = lark_rules(space.grammar())
    return [ast.literal_eval(lit) for name, alts in rules.items() if re.fullmatch(r"s\d+", name)
            for alt in alts for lit in alt]


PROPOSAL = TradeProposal(ticker="SIM", action="open", side="LONG", new_stop_pct=1.2,
                         new_target_pct=2.5, confidence=0.7, rationale="test")
BARS = [{"timestamp": f"t{i}", "open": 100.0 + i, "high": 101.0 + i, "low": 99.0 + i,
         "close": 100.5 + i * 1.1, "volume": 10.0, "symbol": "SIM"} for i in range(12)]


def compiles_applies_and_runs(parent: str, space: EditSpace, sentence: str) -> str:
    edit = space.parse(sentence)
    new, diff = space.diff(parent, edit)
    assert new != parent and diff, sentence
    assert apply_patch({"policy.py": parent}, diff, ["policy.py"])["policy.py"] == new
    assert check_source(new) == [], (sentence, check_source(new))
    policy = load_policy("v", new)
    market = policy.summarise([])  # the summary as a live run builds it, from no bars …
    policy.decide(PROPOSAL, market)
    assert 0.0 <= policy.decide(PROPOSAL, {"ticks": 12, "return_pct": 1.0,
                                           "volatility_pct": 0.8}).size <= 1.0
    for key, value in policy.params.items():  # … and every value stays in its range or off
        low, high, _ = RANGES[key]
        assert low <= value <= high or (value == 0 and key not in NEVER_OFF), (sentence, key)
    return new


@pytest.mark.parametrize("name", sorted(PARENTS))
def test_the_grammar_offers_only_the_parents_keys_and_values_in_their_ranges(name: str) -> None:
    parent = PARENTS[name]
    space = EditSpace.from_source(parent)
    ops = one_op_sentences(space)
    assert set(ops) == set(space.by_text)  # the parser knows exactly the grammar's edits
    params = load_policy("p", parent).params
    for op in ops:
        m = re.fullmatch(r"(scale|set|off|add_check)\{([a-z_.]+)(?:,? (.*))?\}", op)
        assert m, op
        kind, key, arg = m.groups()
        if kind == "add_check":
            assert re.fullmatch(r"[<>] -?[0-9.]+", arg), op
            continue
        assert key in params and key in RANGES, op
        low, high, integer = RANGES[key]
        if kind == "off":
            assert key not in NEVER_OFF and params[key] != 0, op
        elif kind == "set":
            assert low <= float(arg) <= high and float(arg) != params[key], op
            assert not integer or arg.isdigit(), op
        else:
            assert params[key] != 0 and low <= params[key] * float(arg) * 1.01 and \
                params[key] * float(arg) * 0.99 <= high, op
    kinds = {op.split("{")[0] for op in ops}
    assert kinds == {"set", "scale", "off", "add_check"} - ({"add_check"} if name == "no-place"
                                                           else set()) \
        - ({"off"} if name != "all-on" else set())  # the shipped one: only size is on
    assert not any(op.startswith("off{size") for op in ops)
    if name != "no-place":  # a check the parent has already is not offered again
        child = space.compile(parent, space.parse("add_check{proposal.confidence > 0.6}\nwhy: x"))
        again = EditSpace.from_source(child).by_text
        assert "add_check{proposal.confidence > 0.6}" not in again
        assert "add_check{proposal.confidence > 0.5}" in again

    for bad in ("off{size}\nwhy: x", "set{lookback, 11}\nwhy: x", "set{nope, 1.0}\nwhy: x",
                "set{lookback, 5}; set{lookback, 6}\nwhy: x", "set{lookback, 5}",
                "set{lookback, 5}\nwhy: ", "set{lookback, 5}\nwhy: Upper case",
                "set{min_confidence, 0.36}; set{lookback, 5}\nwhy: order",
                "```python\nPARAMS = {}\n```"):
        with pytest.raises(EditError):
            space.parse(bad)


@pytest.mark.parametrize("name", sorted(PARENTS))
def test_every_sentence_of_the_grammar_compiles_applies_and_passes_the_static_check(
        name: str) -> None:
    parent = PARENTS[name]
    space = EditSpace.from_source(parent)
    rules = lark_rules(space.grammar())
    for op in one_op_sentences(space):  # every single edit, exhaustively
        compiles_applies_and_runs(parent, space, op + "\nwhy: all of them")
    rng = random.Random(23)
    sentences = {sample(rules, rng) for _ in range(300)}  # and random ones, two edits too
    assert sum("; " in s for s in sentences) > 100
    for s in sorted(sentences):
        new = compiles_applies_and_runs(parent, space, s)
        edit = space.parse(s)
        # the archive's description of the change names the same keys and checks
        said = describe_change(parent, new)
        for op in edit.ops:
            assert op.key in said, (s, said)


def test_edits_lint_no_worse_than_their_parent() -> None:
    """Stage 1 (ruff + pylint, as the kernel runs them) on one edit of each kind and two."""
    limits = Limits(cpu_s=60, wall_s=120.0, memory_mb=1024)
    sentences = ["scale{stop_vol_mult, 1.5}\nwhy: a", "off{trend_filter_pct}\nwhy: b",
                 "set{lookback, 7}; add_check{market.volatility_pct < 2.0}\nwhy: c",
                 "add_check{proposal.confidence > 0.6}\nwhy: d",
                 "set{min_reward_risk, 2.0}; add_check{market.return_pct > -1.0}\nwhy: e"]

    async def scores() -> list[dict[str, float]]:
        space = EditSpace.from_source(ALL_ON)
        sources = [ALL_ON] + [space.compile(ALL_ON, space.parse(s)) for s in sentences]
        return [await lint_scores(src, limits) for src in sources]

    parent, *children = asyncio.run(scores())
    print("parent", parent, "children", children)
    for s, child in zip(sentences, children, strict=True):
        assert child["ruff_issues"] <= parent["ruff_issues"], (s, child)
        assert child["pylint"] >= parent["pylint"], (s, child)


@pytest.mark.small
def test_the_prompt_fits_a_small_models_budget(small_models: Path) -> None:
    """≤ 400 tokens with a full history (8 sub-windows, 4 edits with long rejection reasons),
    counted by the tokenizer of the small model phi3 serves (the tiny one has 1,024 tokens and
    counts 2 characters a token); the earlier edits are listed worst first."""
    from tokenizers import Tokenizer

    space = EditSpace.from_source(ALL_ON)
    recent = [{"edit": "set{min_confidence, 0.53}; add_check{market.volatility_pct < 2.0}",
               "decision": "rejected", "reward": None,
               "reason": "cascade: cheap-window reward -3.2154 below the parent's -1.0032 " * 3},
              {"edit": "off{trend_filter_pct}", "decision": "archived", "reward": 1.25,
               "reason": "not shown better"},
              {"edit": "a code change", "decision": "rejected", "reward": None,
               "reason": "static check: line 3: import os (only ['math'])"},
              {"edit": "set{lookback, 7}", "decision": "accepted", "reward": 3.5, "reason": ""},
              {"edit": "scale{size, 0.5}", "decision": "archived", "reward": -0.75, "reason": ""}]
    traces = {"parent_reward": -1.2345, "parent_sub_rewards": [-0.123456] * 8,
              "recent_edits": recent}
    system, prompt = edit_prompt(space, traces)
    print(system + "\n" + prompt)
    tok = Tokenizer.from_file(str(small_models / "small-onnx" / "tokenizer.json"))
    n = len(tok.encode(system + "\n" + prompt).ids)
    print("tokens:", n)
    assert n <= 400
    listed = [line.split(" -> ")[0] for line in prompt.splitlines() if " -> " in line]
    # the 4 most recent (the kernel sends them newest first), worst first
    assert listed == ["set{min_confidence, 0.53}; add_check{market.volatility_pct < 2.0}",
                      "a code change", "off{trend_filter_pct}", "set{lookback, 7}"]
    assert "stop_vol_mult 1 [0.25-4]" in prompt
    assert "size 1 [0.1-1, never 0]" in prompt and "add_check{FIELD" in prompt
    assert "add_check" not in edit_prompt(EditSpace.from_source(NO_PLACE), traces)[1].split(
        "Earlier edits")[0]
