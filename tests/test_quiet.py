"""`osiris_core.observability.quiet`: third-party chatter is kept out of the output, unless a load fails."""

from __future__ import annotations

import logging

import pytest

from osiris_core.observability.quiet import quiet


def test_prints_and_noisy_loggers_are_silenced_but_ours_are_not(
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), quiet():
        print("GPT-QModel banner")
        logging.getLogger("torchao").warning("Failed to load _C_mxfp8")
        logging.getLogger("osiris.hermes").info("hermes: loaded")
    assert "banner" not in capsys.readouterr().out
    assert [r.getMessage() for r in caplog.records] == ["hermes: loaded"]


def test_what_was_printed_is_replayed_when_the_load_fails(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OSError), quiet():
        print("could not find model.safetensors")
        raise OSError("load failed")
    assert "could not find model.safetensors" in capsys.readouterr().err
