"""`osiris dgm [--once] [--iterations N] [--planner NAME]`, `osiris dgm archive [--json]`,
`osiris dgm rollback [VARIANT]`: the self-improvement kernel from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from osiris_contracts import tables
from osiris_contracts.messages import StoreQuery
from osiris_contracts.store import PAGE_ROWS, read_rows
from osiris_core.cli import config_option, following_progress, get_config, run_with_bus
from osiris_core.nats.bus import Bus
from osiris_core.protocol import StatusOp

from .config import DgmConfig
from .contracts import DGM_ROLLBACK, DGM_RUN, RollbackReply, RollbackRequest, RunReply, RunRequest

T = TypeVar("T")


def _with_bus(config_path: str | None, fn: Callable[[Bus], Awaitable[T]]) -> T:
    return run_with_bus(get_config(config_path), fn)


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3f}"


@click.group(name="dgm", invoke_without_command=True)
@config_option
@click.option("--once", is_flag=True, help="One iteration (the seeds' kernel step).")
@click.option("--iterations", type=click.IntRange(1, 1000), default=None,
              help="Run N iterations now.")
@click.option("--planner", default=None,
              help="nop, null, mutate, llm (typed edits), llm_diff (free-form diff), auto (a "
                   "bandit over [plugins.dgm] auto_arms, rewarded by each child's gain over "
                   "its parent) or a plugin's planner.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def dgm(ctx: click.Context, config_path: str | None, once: bool, iterations: int | None,
        planner: str | None, as_json: bool) -> None:
    """Improve the orchestrator's policy: plan a patch, verify it in a sandbox against a
    held-out market window, archive it, and put a proven winner live (shadow first; rolled
    back automatically if it loses live). Without options: the kernel's status (its `auto`
    field: each planner the auto bandit chose, how often and its mean gain). Each iteration
    prints its planner (`auto:llm`: auto chose llm) and the planner's why."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config_path
        return
    cfg = get_config(config_path)
    timeout = cfg.plugin("dgm", DgmConfig).planner_timeout_s + 3600.0

    async def go(bus: Bus) -> Any:
        if not once and iterations is None:
            return (await bus.control("dgm", StatusOp(), timeout=5)).status.facts
        n = 1 if once else int(iterations or 1)
        async with following_progress(bus, "dgm", sys.stderr):
            return await bus.request(DGM_RUN, RunRequest(iterations=n, planner=planner),
                                     reply_type=RunReply, timeout=timeout * n)

    out = _with_bus(config_path, go)
    if as_json or not isinstance(out, RunReply):
        click.echo(json.dumps(msgspec.to_builtins(out), indent=2))
        return
    for v in out.iterations:
        click.echo(f"variant {v.id:>4} ← {str(v.parent):>4}  {v.planner:<10} {v.decision:<9} "
                   f"reward {_fmt(v.reward_full)}  {v.reason}")
        if v.why:
            click.echo(f"{'':>14}why: {v.why}")
    click.echo(f"best: variant {out.best} (reward {_fmt(out.best_reward)}; seed policy "
               f"{_fmt(out.seed_reward)}); live: variant {out.live}"
               + (f"; shadow: variant {out.shadow}" if out.shadow else ""))
    if out.message:
        click.echo(out.message)


@dgm.command(name="archive")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.pass_context
def archive(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Every variant with its parent, planner, decision, reward and the planner's why, as a
    lineage tree."""
    async def go(bus: Bus) -> list[dict[str, Any]]:
        return await read_rows(bus, StoreQuery(table=tables.DGM_ARCHIVE, limit=PAGE_ROWS,
                                               order_by="iteration", descending=False))

    rows = _with_bus(config_path or ctx.obj, go)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("the archive is empty (run `osiris dgm --once`)")
        return
    kids: dict[str | None, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: int(r["id"]) if str(r["id"]).isdigit() else 0):
        kids.setdefault(r["parent"], []).append(r)

    def show(parent: str | None, depth: int) -> None:
        for r in kids.get(parent, []):
            click.echo(f"{'  ' * depth}{'└ ' if depth else ''}{r['id']} [{r['decision']}] "
                       f"{r['planner']} reward {_fmt(r['reward_full'])}"
                       + (f" — {r['reason']}" if r["reason"] else "")
                       + (f" (why: {r['why']})" if r.get("why") else ""))
            show(r["id"], depth + 1)

    show(None, 0)


@dgm.command(name="rollback")
@config_option
@click.argument("variant", required=False)
@click.pass_context
def rollback(ctx: click.Context, config_path: str | None, variant: str | None) -> None:
    """Serve the previous policy variant again (or VARIANT), now."""
    async def go(bus: Bus) -> RollbackReply:
        reply: RollbackReply = await bus.request(DGM_ROLLBACK, RollbackRequest(variant=variant),
                                                 reply_type=RollbackReply, timeout=30)
        return reply

    out = _with_bus(config_path or ctx.obj, go)
    click.echo(f"rolled back from variant {out.rolled_back_from or '—'}: {out.message}")
