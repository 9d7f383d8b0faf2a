"""The house-policy sets, without a model: committed as generated, balanced over each rule's
regions (prefixes too), held out on unseen tickers and dates, split as the trainer splits."""

from __future__ import annotations

import re
from collections import Counter
from hashlib import sha256
from importlib.resources import files
from typing import Any

import pytest
from osiris_trainer.dataset import split
from osiris_trainer.evaluate import decision_agreement
from osiris_trainer.houseset import (
    DATA,
    N_HELD,
    N_TRAIN,
    POLICIES,
    dumps,
    examples,
    load_rows,
    make_rows,
    meanrev,
    momentum,
    subset,
)

from osiris_contracts.messages import TradeProposal

LEGACY_SHA256 = "b577546eb78d88904908eedac6152cb35dcf31c17f4e5b69b476b162f2552457"
MARKET = re.compile(r"Market: (\S+) 10 bars (\d{4})-\d\d-\d\dT.* return (-?[\d.]+)%, "
                    r"volatility ([\d.]+)% per bar\.")


def _situation(row: dict[str, Any]) -> tuple[str, str, float, float]:
    """(ticker, year, return, volatility) as the prompt shows them."""
    m = MARKET.search(row["prompt"])
    assert m, row["prompt"]
    return m[1], m[2], float(m[3]), float(m[4])


def _side(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["split"] == name]


@pytest.mark.parametrize("policy", [None, *POLICIES])
def test_the_committed_files_are_what_the_generator_makes(policy: str | None) -> None:
    data = DATA if policy is None else POLICIES[policy].data
    assert files("osiris_trainer").joinpath(data).read_text() == dumps(make_rows(policy))


def test_the_legacy_set_is_unchanged() -> None:
    """The real-model test and `learning.py` read these 40 rows: pinned to the byte."""
    text = files("osiris_trainer").joinpath(DATA).read_text()
    assert sha256(text.encode()).hexdigest() == LEGACY_SHA256
    rows = load_rows()
    assert len(rows) == 40 and [r["split"] for r in rows] == ["train"] * 30 + ["eval"] * 10
    assert all(set(r) == {"id", "split", "prompt", "correction"} for r in rows)


@pytest.mark.parametrize("policy", list(POLICIES))
def test_a_policy_set_follows_its_rule_balanced_over_its_regions(policy: str) -> None:
    p = POLICIES[policy]
    rows = load_rows(policy=policy)
    train, held = _side(rows, "train"), _side(rows, "eval")
    assert (len(train), len(held)) == (N_TRAIN, N_HELD) and rows == train + held
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["id"].startswith(f"house-{policy}-") for r in rows)
    decisions: dict[str, set[tuple[str, str, float, float]]] = {}
    for r in rows:
        ticker, _, ret, vol = _situation(r)
        want = TradeProposal(**r["correction"])
        assert want == p.rule(ticker, ret, vol)
        assert want.rationale.endswith(f"after a {ret:+.1f}% move." if policy == "momentum"
                                       else f"after a {ret:+.1f}% move at {vol:.2f}% volatility.")
        decisions.setdefault(r["region"], set()).add((want.action, want.side, want.new_stop_pct,
                                                      want.new_target_pct))
    # one decision per region, a different one in each
    assert all(len(d) == 1 for d in decisions.values())
    assert len(set.union(*decisions.values())) == len(p.regions)
    names = [g.name for g in p.regions]
    for side, n in ((train, N_TRAIN), (held, N_HELD)):
        counts = Counter(r["region"] for r in side)
        assert set(counts) == set(names)
        assert max(counts.values()) - min(counts.values()) <= 1
        assert sum(counts.values()) == n
        for k in (10, 30, 100):  # the learning curve's prefixes
            pre = Counter(r["region"] for r in side[:k])
            assert set(pre) == set(names) and max(pre.values()) - min(pre.values()) <= 1


@pytest.mark.parametrize("policy", list(POLICIES))
def test_held_out_situations_name_unseen_tickers_and_dates(policy: str) -> None:
    rows = load_rows(policy=policy)
    train = [_situation(r) for r in _side(rows, "train")]
    held = [_situation(r) for r in _side(rows, "eval")]
    assert not {t for t, *_ in train} & {t for t, *_ in held}
    assert {y for _, y, *_ in train} == {"2024"} and {y for _, y, *_ in held} == {"2025"}
    # every ticker sees several regions: a ticker does not give the decision away
    by_ticker: dict[str, set[str]] = {}
    for r in rows:
        by_ticker.setdefault(r["correction"]["ticker"], set()).add(r["region"])
    assert all(len(v) == len(POLICIES[policy].regions) for v in by_ticker.values())


@pytest.mark.parametrize("policy", list(POLICIES))
def test_the_trainers_split_holds_out_exactly_the_eval_rows(policy: str) -> None:
    hs = examples(load_rows(policy=policy))
    train, held = split(hs.train + hs.held, 0.25)  # what the actor does with the store's rows
    assert {e.id for e in held} == {e.id for e in hs.held} and len(held) == N_HELD
    sub = examples(subset(load_rows(policy=policy), 10, 20))
    train, held = split(sub.train + sub.held, 0.25)
    assert (len(train), len(held)) == (10, 20)


def test_subset_takes_prefixes_of_each_side() -> None:
    rows = load_rows(policy="meanrev")
    sub = subset(rows, 30, 12)
    assert sub == _side(rows, "train")[:30] + _side(rows, "eval")[:12]
    assert len(subset(rows, 100)) == 100 + N_HELD
    with pytest.raises(ValueError):
        subset(rows, N_TRAIN + 1)


def test_the_two_policies_are_different_shapes() -> None:
    for policy, other in (("momentum", meanrev), ("meanrev", momentum)):
        rows = load_rows(policy=policy)
        scores = []
        for r in rows:
            ticker, _, ret, vol = _situation(r)
            scores.append(decision_agreement(other(ticker, ret, vol),
                                             TradeProposal(**r["correction"])))
        assert sum(s < 1 for s in scores) / len(scores) > 0.8, policy
        assert sum(scores) / len(scores) < 0.5, policy


def test_the_rules_thresholds() -> None:
    def decide(p: TradeProposal) -> tuple[str, str, float, float]:
        return p.action, p.side, p.new_stop_pct, p.new_target_pct

    assert decide(momentum("X", 2.0, 0.3)) == ("open", "LONG", 2.0, 6.0)
    assert decide(momentum("X", 1.99, 0.9)) == ("increase", "LONG", 1.5, 3.0)
    assert decide(momentum("X", 0.5, 0.9)) == ("increase", "LONG", 1.5, 3.0)
    assert decide(momentum("X", -0.49, 0.9)) == ("hold", "LONG", 1.0, 2.0)
    assert decide(momentum("X", -0.5, 0.9)) == ("reduce", "SHORT", 1.5, 3.0)
    assert decide(momentum("X", -2.0, 0.9)) == ("open", "SHORT", 2.0, 6.0)
    assert decide(meanrev("X", 3.0, 0.3)) == ("open", "SHORT", 2.5, 4.0)
    assert decide(meanrev("X", -3.0, 0.9)) == ("open", "LONG", 2.5, 4.0)
    assert decide(meanrev("X", 2.99, 0.6)) == ("reduce", "LONG", 3.0, 2.0)
    assert decide(meanrev("X", -0.01, 0.6)) == ("reduce", "SHORT", 3.0, 2.0)
    assert decide(meanrev("X", 0.0, 0.59)) == ("hold", "LONG", 1.0, 1.5)
    assert decide(meanrev("X", -2.99, 0.59)) == ("hold", "SHORT", 1.0, 1.5)
    p = meanrev("AAPL", 1.23, 0.71)
    assert p.ticker == "AAPL" and p.confidence == 0.7
    assert p.rationale == "Choppy; cut size after a +1.2% move at 0.71% volatility."
    assert momentum("AAPL", 1.23, 0.71).rationale == "Steady gains; add after a +1.2% move."
