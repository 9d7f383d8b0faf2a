"""phi3's prompt and guidance, without a model: the chat format follows the folder, the
tickers a prompt names narrow the schema, and the configured bounds are what guidance uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from osiris_phi3.config import Phi3Config
from osiris_phi3.prompt import chat_prompt, detect_format
from osiris_phi3.schema import PROPOSAL_SCHEMA, named_tickers, proposal_schema, validate


def test_the_chat_format_is_read_from_the_folder(tmp_path: Path) -> None:
    assert detect_format(tmp_path) == "phi3"  # nothing to read: Phi-3's own markup
    # a tokenizer whose special tokens include ChatML's, with a Phi-3 template: Phi-3
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "added_tokens_decoder": {"5": {"content": "<|im_start|>"}},
        "chat_template": "{% for m in messages %}<|{{ m['role'] }}|>{% endfor %}"}))
    assert detect_format(tmp_path) == "phi3"
    (tmp_path / "chat_template.jinja").write_text("{{'<|im_start|>' + message['role']}}")
    assert detect_format(tmp_path) == "chatml"
    assert chat_prompt("S", "U", "chatml") == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
    assert chat_prompt("S", "U") == "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\n"


@pytest.mark.parametrize(("text", "want"), [
    ("Review.\nMarket: SIM 10 bars 2023-01-02T14:30:00+00:00 to 2023-01-03T00:30:00+00:00: "
     "open 1.00, return 2%.\nAnswer with one JSON trade proposal.", ["SIM"]),
    ("XYZ gapped up on volume", ["XYZ"]),
    ("hedge my $AAPL with SPY and BRK.B; I think USD and the CPI print matter", ["AAPL", "SPY", "BRK.B"]),
    ("what should I do now?", []),
    ("NVDA, then NVDA again, then AMD", ["NVDA", "AMD"]),
])
def test_named_tickers(text: str, want: list[str]) -> None:
    assert named_tickers(text) == want


def test_the_schema_narrows_the_ticker_and_takes_the_configured_bounds() -> None:
    s = proposal_schema(max_stop_pct=10, max_target_pct=30, rationale_max_chars=120,
                        tickers=["NVDA"])
    props = s["properties"]
    assert isinstance(props, dict)
    assert props["ticker"] == {"type": "string", "enum": ["NVDA"]}
    assert props["new_stop_pct"]["maximum"] == 10 and props["new_target_pct"]["maximum"] == 30
    assert props["rationale"]["maxLength"] == 120
    # no narrower than the contract ever allows, and the default is the contract itself
    wide = proposal_schema(max_stop_pct=500, rationale_max_chars=999)["properties"]
    assert isinstance(wide, dict)
    assert wide["new_stop_pct"]["maximum"] == 100 and wide["rationale"]["maxLength"] == 160
    assert json.dumps(PROPOSAL_SCHEMA) == json.dumps(proposal_schema())
    validate('{"ticker":"NVDA","action":"hold","side":"LONG","new_stop_pct":10,'
             '"new_target_pct":30,"confidence":0.5,"rationale":"ok"}')


def test_config_rejects_bounds_outside_the_contract() -> None:
    with pytest.raises(ValueError, match="rationale_max_chars"):
        Phi3Config(rationale_max_chars=500)
    with pytest.raises(ValueError, match="max_stop_pct"):
        Phi3Config(max_stop_pct=0)
    with pytest.raises(ValueError, match="repetition_penalty"):
        Phi3Config(repetition_penalty=0)
    for chars in (0, 2_000_000):  # a guided request could never pass, or past the wire's bound
        with pytest.raises(ValueError, match="max_grammar_chars"):
            Phi3Config(max_grammar_chars=chars)
