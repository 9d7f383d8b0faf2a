"""The held-out scoring and the gate, and the committed house-policy set, without a model."""

from __future__ import annotations

import math

import pytest
from osiris_trainer.dataset import split
from osiris_trainer.evaluate import (
    DECISION_FIELDS,
    decision_agreement,
    field_hits,
    parse_reply,
)
from osiris_trainer.houseset import DATA, dumps, examples, house_proposal, load_rows, make_rows
from osiris_trainer.served import gate, served_table
from osiris_trainer.stats import Interval, Scored, best_constant, bootstrap_ci, paired_diff_ci

from osiris_contracts.messages import TradeProposal

WANT = TradeProposal(ticker="NVDA", action="open", side="LONG", new_stop_pct=2.0,
                     new_target_pct=6.0, confidence=0.7, rationale="x")


def test_the_committed_set_is_what_the_generator_makes() -> None:
    from importlib.resources import files

    assert files("osiris_trainer").joinpath(DATA).read_text() == dumps(make_rows())


def test_the_set_follows_one_rule_and_the_trainers_split_holds_out_the_eval_rows() -> None:
    rows = load_rows()
    assert len(rows) == 40 and sum(r["split"] == "eval" for r in rows) == 10
    for r in rows:
        ret = float(r["prompt"].split("return ")[1].split("%")[0])
        assert TradeProposal(**r["correction"]) == house_proposal(r["correction"]["ticker"], ret)
    hs = examples(rows)
    train, held = split(hs.train + hs.held, 0.25)  # what the actor does with the store's rows
    assert {e.id for e in held} == {e.id for e in hs.held}
    assert not {TradeProposal(**r["correction"]).ticker for r in rows if r["split"] == "eval"} & \
        {TradeProposal(**r["correction"]).ticker for r in rows if r["split"] == "train"}
    assert {TradeProposal(**r["correction"]).action for r in rows if r["split"] == "eval"} == \
        {"open", "increase", "hold", "reduce"}


def test_replies_are_parsed_and_scored_field_by_field() -> None:
    assert parse_reply("Sure! Here it is: " + '{"ticker":"NVDA","action":"open","side":"LONG",'
                       '"new_stop_pct":2.2,"new_target_pct":5,"confidence":0.7,"rationale":"r"}'
                       " Hope it helps.") is not None
    assert parse_reply("The market is bullish.") is None
    assert parse_reply('{"ticker":"nvda"}') is None
    got = TradeProposal(ticker="NVDA", action="hold", side="LONG", new_stop_pct=2.2,
                        new_target_pct=5.0, confidence=0.1, rationale="y")
    assert decision_agreement(got, WANT) == 2 / 4  # side, stop (within 0.2)
    assert decision_agreement(got, WANT, stop_tolerance=0.1) == 1 / 4
    assert decision_agreement(None, WANT) == 0.0


def _scored(right: list[int], n: int = 40) -> Scored:
    """n rows, row i answered with `right[i % len(right)]` of the four fields right."""
    hits = []
    for i in range(n):
        k = right[i % len(right)]
        hits.append({f: j < k for j, f in enumerate(DECISION_FIELDS)})
    return Scored(tuple(True for _ in hits), tuple(hits))


def test_the_served_gate_wants_a_paired_gain_above_zero() -> None:
    live, better = _scored([2, 3]), _scored([4, 4, 3])
    v = gate(live, better)
    assert v.passed and v.diff.lo > 0 and "62% → 92%" in v.reason, v.reason
    v = gate(live, live)
    assert not v.passed and "lower bound is not above zero" in v.reason
    assert v.diff == Interval(0.0, 0.0, 0.0)
    v = gate(better, live)
    assert not v.passed and v.diff.hi < 0
    # a gain too small for this many rows: refused, and the reason says more rows would tell
    slight = _scored([2, 3], n=39)
    slight = Scored(slight.valid + (True,), slight.hits + (dict.fromkeys(DECISION_FIELDS, True),))
    v = gate(_scored([2, 3], n=40), slight)
    assert not v.passed and v.diff.mean > 0 and "more held-out corrections" in v.reason
    # fewer valid replies refuse even a gain
    invalid = Scored((False,) + better.valid[1:], better.hits)
    v = gate(live, invalid)
    assert not v.passed and "valid replies fell from 100% to 98%" in v.reason


def test_the_served_table_shows_every_row_with_its_interval() -> None:
    wants = [_p("open", "LONG", 2.0, 6.0), _p("hold", "LONG", 1.0, 2.0)] * 5
    live = Scored.of([_p("open", "LONG", 2.0, 2.0)] * 10, wants)
    report = {"constant": {**live.to_dict(), "answer": {}},
              "live": {**live.to_dict(), "version": "v1"},
              "candidate": Scored.of(wants, wants).to_dict()}
    report["gate"] = {"passed": True, "reason": "", "diff": {"mean": 0.3, "lo": 0.2, "hi": 0.4}}
    table = served_table(report)
    assert "best constant" in table and "live (served) v1" in table
    assert "100% [100%–100%]" in table and "+30.0 points [+20.0, +40.0] → published" in table
    assert "few-shot" not in table  # rows that were not scored are not printed


def test_decision_fields_leave_the_ticker_out() -> None:
    other = TradeProposal(ticker="AAPL", action="open", side="long", new_stop_pct=2.15,
                          new_target_pct=5.0, confidence=0.1, rationale="y")
    assert field_hits(other, WANT) == {"action": True, "side": True, "new_stop_pct": True,
                                       "new_target_pct": False}
    assert tuple(field_hits(other, WANT)) == DECISION_FIELDS
    assert decision_agreement(other, WANT) == 3 / 4
    assert decision_agreement(other, WANT, target_tolerance=1.0) == 1.0
    assert decision_agreement(other, WANT, stop_tolerance=0.1) == 2 / 4
    assert field_hits(None, WANT) == dict.fromkeys(DECISION_FIELDS, False)
    assert decision_agreement(WANT, WANT) == 1.0


def test_bootstrap_intervals() -> None:
    assert all(math.isnan(v) for v in (bootstrap_ci([]).mean, bootstrap_ci([]).lo))
    assert bootstrap_ci([0.75]) == Interval(0.75, 0.75, 0.75)
    small = [float(i % 2) for i in range(20)]
    big = small * 10
    a, b = bootstrap_ci(small), bootstrap_ci(big)
    assert a.lo < a.mean == 0.5 < a.hi and b.lo < b.mean < b.hi
    assert b.hi - b.lo < (a.hi - a.lo) / 2  # ~1/√10 as wide with 10× the rows
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    assert bootstrap_ci(small, seed=3) != bootstrap_ci(small, seed=4)
    narrow = bootstrap_ci(small, level=0.5)
    assert a.lo < narrow.lo and narrow.hi < a.hi


def test_paired_differences() -> None:
    a = [float(i % 3 == 0) for i in range(60)]
    assert paired_diff_ci(a, a) == Interval(0.0, 0.0, 0.0)
    better = [1.0 if i % 5 else x for i, x in enumerate(a)]  # right on most rows a missed
    d = paired_diff_ci(better, a)
    assert d.lo > 0 and math.isclose(d.mean, sum(better) / 60 - sum(a) / 60)
    with pytest.raises(ValueError):
        paired_diff_ci(a, a[:-1])


def _p(action: str, side: str, stop: float, target: float) -> TradeProposal:
    return TradeProposal(ticker="X", action=action, side=side, new_stop_pct=stop,
                         new_target_pct=target, confidence=0.7, rationale="r")


def test_best_constant_is_the_fieldwise_mode() -> None:
    wants = [_p("hold", "LONG", 1.0, 2.0), _p("hold", "SHORT", 1.0, 6.0),
             _p("open", "SHORT", 3.0, 6.0), _p("reduce", "LONG", 1.1, 2.0)]
    c = best_constant(wants)
    assert (c.action, c.side, c.new_stop_pct, c.new_target_pct) == ("hold", "LONG", 1.0, 2.0)
    # the midpoint covers both stops within ±0.25 where neither observed stop does
    c = best_constant([_p("open", "LONG", 1.5, 3.0), _p("open", "LONG", 2.0, 3.0),
                       _p("hold", "LONG", 2.0, 3.0), _p("hold", "LONG", 1.0, 3.0)],
                      stop_tolerance=0.25)
    assert (c.action, c.new_stop_pct) == ("hold", 1.75)
    # at the default tolerance no number is credited for two of the house's stops
    c = best_constant([_p("open", "LONG", 1.5, 3.0), _p("open", "LONG", 2.0, 3.0),
                       _p("hold", "LONG", 2.0, 3.0), _p("hold", "LONG", 1.0, 3.0)])
    assert c.new_stop_pct == 2.0
    with pytest.raises(ValueError):
        best_constant([])


def test_a_constant_on_the_momentum_pool_scores_well_below_the_rule() -> None:
    rows = load_rows(policy="momentum")
    train = [TradeProposal(**r["correction"]) for r in rows if r["split"] == "train"]
    held = [TradeProposal(**r["correction"]) for r in rows if r["split"] == "eval"]
    c = best_constant(train)
    assert (c.action, c.side, c.new_stop_pct, c.new_target_pct) == ("open", "LONG", 1.5, 3.0)
    scored = Scored.of([c] * len(held), held)
    ci = scored.overall()
    assert 0.3 < ci.lo <= ci.mean <= ci.hi < 0.8
    assert Scored.of(held, held).overall() == Interval(1.0, 1.0, 1.0)
    out = scored.to_dict()
    assert out["n"] == 200 and out["valid"] == 1.0 and set(out["fields"]) == set(DECISION_FIELDS)
    assert out["fields"]["new_stop_pct"]["mean"] == 0.4  # two of the five bands stop at 1.5
    lost = Scored.of([None] * len(held), held)
    assert lost.to_dict()["valid"] == 0.0 and lost.overall().mean == 0.0
    assert paired_diff_ci(scored.scores(), lost.scores()).lo > 0.3
