"""The held-out scoring and the gate, and the committed house-policy set, without a model."""

from __future__ import annotations

from osiris_trainer.config import TrainerConfig
from osiris_trainer.dataset import split
from osiris_trainer.evaluate import EvalRow, field_agreement, parse_reply, report_table
from osiris_trainer.houseset import DATA, dumps, examples, house_proposal, load_rows, make_rows
from osiris_trainer.train import gate

from osiris_core.contracts import TradeProposal

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
    assert field_agreement(got, WANT) == 3 / 5  # ticker, side, stop (within 0.25)
    assert field_agreement(got, WANT, stop_tolerance=0.1) == 2 / 5
    assert field_agreement(None, WANT) == 0.0


def test_the_gate_wants_a_gain_and_no_loss() -> None:
    cfg = TrainerConfig()
    base = EvalRow(valid=0.0, agreement=0.0, loglik=-1.5, n=10)
    good = EvalRow(valid=1.0, agreement=0.64, loglik=-0.08, n=10)
    assert gate(cfg, base, good)[0]
    ok, why = gate(cfg, good, base)
    assert not ok and "field agreement fell" in why and "did not beat" in why
    same_loss_more_agree = EvalRow(valid=1.0, agreement=0.7, loglik=-0.08, n=10)
    assert gate(cfg, good, same_loss_more_agree)[0]
    lower_pref = EvalRow(valid=1.0, agreement=0.7, loglik=-0.01, n=10, pref_acc=0.5)
    ok, why = gate(cfg, EvalRow(valid=1.0, agreement=0.7, loglik=-0.08, n=10, pref_acc=0.9),
                   lower_pref)
    assert not ok and "preference accuracy fell" in why
    table = report_table({"base": base.as_dict(), "adapter": good.as_dict()})
    assert "base model" in table and "adapter alone" in table and "64%" in table
