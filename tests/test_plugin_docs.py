"""docs/plugins.md stays true: its example test runs, its code is the example plugin's code, and
the docs link only to files inside this repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from osiris_example.contracts import EchoReply, EchoRequest
from osiris_example.subjects import ECHO

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "osiris-example" / "osiris_example"
PLUGINS_MD = ROOT / "docs" / "plugins.md"


# --- the example test of "Testing your plugin", as written there --------------------------
async def test_echo_upper_cases(osiris_config, osiris_runtime, bus) -> None:
    async with osiris_runtime(osiris_config(["example"], {"example": {"ledger": "l.db"}})):
        reply = await bus.request(ECHO, EchoRequest(text="hi", upper=True),
                                  reply_type=EchoReply)
    assert reply.text == "HI"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_docs_test_example_is_the_one_above() -> None:
    block = next(b for b in python_blocks(PLUGINS_MD.read_text()) if "async def test_" in b)
    assert block.split("\n\n\n", 1)[1].strip() in Path(__file__).read_text()


def test_the_example_plugin_code_in_the_docs_is_the_example_plugin_code() -> None:
    source = {line.strip() for p in EXAMPLE.glob("*.py") for line in p.read_text().splitlines()}
    shown = [b for b in python_blocks(PLUGINS_MD.read_text())
             if "from .subjects import ECHO" in b or "from .cli import example" in b
             or "from .routes import echo_route" in b or '{"ledger_rows": rows}' in b]
    assert len(shown) >= 5  # the CLI verb and its hook, the route and its hook, facts()
    for block in shown:
        missing = [line for line in block.splitlines() if line.strip()
                   and line.strip() not in source]
        assert not missing, f"docs/plugins.md shows lines the example plugin lacks: {missing}"


@pytest.mark.parametrize("doc", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))],
                         ids=lambda p: p.name)
def test_docs_link_only_to_files_in_the_repository(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the same page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
        assert path.exists(), f"{doc.name} links to a missing file: {target}"
