"""`osiris streams`: the catalogue's streams as the server has them, and `--apply`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from nats.js.api import StreamConfig

from osiris_core.cli.streams import streams
from osiris_core.nats.server import EmbeddedNats
from osiris_core.nats.streams import StreamPlan
from osiris_core.plugins import load_plugins


def test_streams_shows_what_is_missing_and_apply_makes_it(tmp_path: Path) -> None:
    wanted = load_plugins(None).catalogue.streams()
    with EmbeddedNats(tmp_path / "nats") as srv:
        cfg = tmp_path / "osiris.toml"
        cfg.write_text(f'[osiris]\nnats_url = "{srv.url}"\n')
        runner = CliRunner()
        before = runner.invoke(streams, ["-c", str(cfg)])
        assert before.exit_code == 1, before.output  # every stream still to create
        assert before.output.count("needs: create with") == len(wanted)
        applied = runner.invoke(streams, ["-c", str(cfg), "--apply"])
        assert applied.exit_code == 0, applied.output
        after = runner.invoke(streams, ["-c", str(cfg), "--json"])
        assert after.exit_code == 0, after.output
        rows = [json.loads(line) for line in after.output.splitlines()]
        assert {r["name"]: r["server_subjects"] for r in rows} == wanted
        assert all(r["action"] == "ok" and r["server_replicas"] == 1 for r in rows)


def test_a_stream_is_raised_never_lowered() -> None:
    """A node asking for fewer replicas than the stream has leaves it alone; asking for more,
    or for a subject it lacks, changes only that (limits and other subjects stay)."""
    have = StreamConfig(name="S", subjects=["a", "x"], num_replicas=3, max_msgs=7)
    p = StreamPlan("S", ["a"], replicas=1, exists=True, have_subjects=["a", "x"],
                   have_replicas=3, config=have)
    assert p.action == "ok"
    p = StreamPlan("S", ["a", "b"], replicas=1, exists=True, have_subjects=["a", "x"],
                   have_replicas=3, config=have)
    assert p.action == "update" and p.describe() == "add b"
    new = p.wanted()
    assert new.subjects == ["a", "x", "b"] and new.num_replicas == 3 and new.max_msgs == 7
    p = StreamPlan("S", ["a"], replicas=5, exists=True, have_subjects=["a"], have_replicas=3,
                   config=have)
    assert p.describe() == "replicas 3 → 5" and p.wanted().num_replicas == 5
