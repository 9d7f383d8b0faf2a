"""The review desk (`/desk`) in headless Chromium against one real `osiris run` on the tiny
models — gateway, hermes, phi3, orchestrator, feedback, sim, trainer and dgm — with an API key
and an admin key set. The tests share that runtime and one browser, in the order a reviewer
works: the key prompt, a live proposal corrected, twenty more by keyboard, train now, then the
self-improvement view. Set OSIRIS_DESK_SCREENSHOT=path to keep the README's screenshot.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from osiris_gateway.testing import headless_chromium
from osiris_sim.csvdata import make_data

from osiris_contracts import tables
from osiris_contracts.messages import StoreQuery, StoreRows
from osiris_contracts.subjects import STORE_QUERY
from osiris_core.nats.bus import Bus, connect
from osiris_core.testing import OsirisProcess, write_config

from .conftest import free_port

pytestmark = pytest.mark.slow
PLUGINS = ["gateway", "hermes", "phi3", "orchestrator", "feedback", "sim", "trainer", "dgm"]
API_KEY = "desk-api-key-123"
ADMIN_KEY = "desk-admin-key-456"
REVIEWS = 20


class Desk:
    def __init__(self, url: str, nats_url: str, config: Path, driver: Any) -> None:
        self.url, self.nats_url, self.config, self.driver = url, nats_url, config, driver

    def js(self, expr: str) -> Any:
        return self.driver.execute_script(f"return {expr}")

    def until(self, expr: str, timeout: float = 60) -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
                lambda d: d.execute_script(f"return {expr}"))
        except TimeoutException:
            seen = self.js("window.desk && {state: desk.state, conn: desk.conn, view: desk.view, "
                           "proposals: desk.proposals.length, posted: desk.posted, "
                           "errors: desk.errors, status: document.getElementById('msg').textContent}")
            raise AssertionError(f"never within {timeout:g}s: {expr}\npage: {seen}") from None

    def keys(self, *keys: str) -> None:
        self.driver.switch_to.active_element.send_keys(*keys)

    def http(self, method: str, path: str, key: str | None = API_KEY,
             headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        sent = {**({"X-API-Key": key} if key else {}), **(headers or {})}
        return httpx.request(method, self.url + path, headers=sent, timeout=60, **kw)

    def request(self, subject: Any, payload: Any, reply_type: Any = Any) -> Any:
        """A request on the bus, as any service would send it."""
        async def go() -> Any:
            nc = await connect(self.nats_url, name="desk-test")
            try:
                return await Bus(nc).request(subject, payload, reply_type=reply_type, timeout=30)
            finally:
                await nc.close()
        return asyncio.run(go())

    def rows(self, table: str, where: str | None = None) -> list[dict[str, Any]]:
        """What `osiris.store.query` returns."""
        reply: StoreRows = self.request(STORE_QUERY, StoreQuery(table=table, filter=where,
                                                                 limit=1000), StoreRows)
        return reply.rows

    def rows_until(self, table: str, where: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:  # the feedback actor stores what it acknowledged from its own consumer
            rows = self.rows(table, where)
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)

    def sim(self, op: str) -> None:
        r = self.http("POST", f"/actors/sim/{op}", headers={"X-Admin-Key": ADMIN_KEY})
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def desk(nats_url: str, tiny_models: Path) -> Iterator[Desk]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="osiris-desk-") as d:
        csv = make_data(Path(d) / "market.csv", bars=400, seed=11)
        cfg = write_config(Path(d) / "osiris.toml", nats_url, PLUGINS, {
            "gateway": {"port": port, "api_key": API_KEY, "admin_key": ADMIN_KEY,
                        "rate_limit_per_s": 10_000.0, "rate_limit_burst": 10_000},
            "hermes": {"model": str(tiny_models / "hermes"), "device": "cpu"},
            "phi3": {"model": str(tiny_models / "phi3-onnx"), "provider": "cpu"},
            "orchestrator": {"ticks_per_proposal": 5},
            "sim": {"csv": str(csv), "speed": "36000x", "loop": True},
            "trainer": {"base_model": str(tiny_models / "phi3"), "schedule": "", "few_shot": 0,
                        "sft_steps": 10, "dpo_steps": 2, "min_examples": 4},
            "dgm": {"market_csv": str(csv), "holdout_fraction": 0.25, "shadow_decisions": 0,
                    "monitor_max_pairs": 0, "bootstrap": 200},
        })
        env = {"HF_HUB_OFFLINE": "1", "OSIRIS_LOG_LEVEL": "WARNING",
               "OSIRIS_LOAD_PLUGINS": ",".join(PLUGINS)}
        with headless_chromium("--window-size=1180,760") as driver, \
                OsirisProcess(cfg, env=env):
            yield Desk(f"http://127.0.0.1:{port}", nats_url, cfg, driver)


def test_with_an_api_key_the_page_without_it_shows_only_the_key_prompt(desk: Desk) -> None:
    page = desk.http("GET", "/desk", key=None)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert desk.http("GET", "/store/proposals", key=None).status_code == 401
    desk.driver.get(desk.url + "/desk")
    desk.until("window.desk && window.desk.state === 'locked'")
    assert desk.driver.find_element("id", "keyprompt").is_displayed()
    assert desk.js("document.getElementById('app').hidden && "
                   "document.getElementById('app').children.length") == 0
    assert not desk.driver.find_element("id", "tabs").is_displayed()
    assert desk.js("window.desk.proposals.length") == 0
    asked = desk.js("performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)")
    assert sorted(asked) == ["/actors/", "/desk/desk.css", "/desk/desk.js"], asked

    desk.driver.find_element("id", "apikey").send_keys(API_KEY + "\n")  # no admin key yet
    desk.until("window.desk.state === 'open' && window.desk.conn === 'open' && !!window.desk.schema")
    assert not desk.driver.find_element("id", "keyprompt").is_displayed()
    assert API_KEY not in desk.driver.current_url
    asked = desk.js("performance.getEntriesByType('resource').map(e => e.name)")
    assert not [u for u in asked if API_KEY in u], asked  # the key travels in headers only


def test_a_sim_proposal_appears_live_and_a_two_field_correction_is_stored(desk: Desk) -> None:
    desk.js("(window.sameDocument = 'yes')")
    # a proposal the orchestrator made from the sim's ticks after the page was open
    live = "window.desk.proposals.find(p => p.advice && p.adapter !== 'not recorded')"
    desk.until(f"!!{live}", 120)
    desk.sim("pause")
    assert desk.js("window.sameDocument") == "yes"  # no reload
    tid = desk.js(f"{live}.tid")
    desk.until(f"document.querySelector('#queue li[data-tid=\"{tid}\"]') !== null")
    # a click on it in the queue (one script: the queue is redrawn as events arrive)
    desk.js(f"document.querySelector('#queue li[data-tid=\"{tid}\"]').click()")
    desk.until(f"document.getElementById('current').dataset.tid === '{tid}'")
    original = desk.js(f"window.desk.byTid['{tid}'].proposal")
    assert desk.driver.find_element("id", "gate").text.startswith(("approved", "rejected"))
    assert desk.driver.find_element("id", "served-by").text == "adapter base · policy variant 0"

    # a schema-invalid edit: refused in the page, nothing sent
    from selenium.webdriver.common.keys import Keys
    desk.keys("e")
    desk.until("document.activeElement.id === 'f-ticker'")
    stop = desk.driver.find_element("id", "f-new_stop_pct")
    stop.send_keys(Keys.CONTROL, "a")
    stop.send_keys("abc", Keys.ENTER)
    desk.until("window.desk.refusedInPage === 1")
    assert "corrected_proposal.new_stop_pct" in desk.driver.find_element("id", "card-error").text
    assert desk.js("window.desk.posted") == 0
    # ... and sent directly, by the gateway
    bad = {**original, "new_stop_pct": "abc"}
    r = desk.http("POST", "/feedback/phi3/", json={
        "transaction_id": tid, "feedback_type": "correction", "corrected_proposal": bad})
    assert r.status_code == 422 and r.json()["field"] == "corrected_proposal.new_stop_pct", r.text
    assert desk.rows(tables.FEEDBACK, f"transaction_id = '{tid}'") == []

    # two fields corrected in place, then Enter
    stop.send_keys(Keys.CONTROL, "a")
    stop.send_keys("2.5")
    conf = desk.driver.find_element("id", "f-confidence")
    conf.send_keys(Keys.CONTROL, "a")
    conf.send_keys("0.9", Keys.ENTER)
    desk.until("window.desk.posted === 1")
    rows = desk.rows_until(tables.FEEDBACK, f"transaction_id = '{tid}'", 1)
    assert len(rows) == 1, rows
    assert rows[0]["feedback_type"] == "correction"
    assert rows[0]["corrected_proposal"] == {**original, "new_stop_pct": 2.5, "confidence": 0.9}
    assert desk.js(f"window.desk.byTid['{tid}'].review") == "corrected"

    shot = os.environ.get("OSIRIS_DESK_SCREENSHOT") or str(Path(tempfile.gettempdir()) / "desk.png")
    # the corrected proposal, with its gate, assessment and prompt
    desk.js(f"document.querySelector('#queue li[data-tid=\"{tid}\"]').click()")
    desk.until(f"document.getElementById('current').dataset.tid === '{tid}'")
    assert desk.driver.save_screenshot(shot)
    assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_twenty_proposals_corrected_through_the_keyboard(desk: Desk) -> None:
    from selenium.webdriver.common.keys import Keys
    before = desk.js("window.desk.posted")
    desk.sim("resume")
    desk.until(f"window.desk.proposals.filter(p => !p.review).length >= {REVIEWS}", 180)
    desk.sim("pause")
    desk.driver.find_element("tag name", "body").click()
    tids = []
    t0 = time.monotonic()
    for i in range(REVIEWS):
        tid = desk.js("window.desk.proposals[window.desk.cursor].tid")
        assert not desk.js(f"window.desk.byTid['{tid}'].review")
        tids.append(tid)
        desk.keys("e")  # edit: the first field has the focus
        desk.until("document.activeElement.id === 'f-ticker'", 10)
        desk.keys(Keys.TAB, Keys.TAB, Keys.TAB)  # ticker → action → side → new_stop_pct
        desk.keys(Keys.CONTROL, "a")
        desk.keys(f"{1 + i / 10:.1f}", Keys.ENTER)
        desk.until(f"window.desk.posted === {before + i + 1}", 10)
    took = time.monotonic() - t0
    print(f"\n{REVIEWS} corrections through the keyboard in {took:.1f}s "
          f"({REVIEWS / took * 60:.0f} a minute, Selenium's typing included)")
    assert len(set(tids)) == REVIEWS
    where = "feedback_type = 'correction' AND transaction_id IN (" + \
        ", ".join(f"'{t}'" for t in tids) + ")"
    rows = desk.rows_until(tables.FEEDBACK, where, REVIEWS)
    assert len(rows) == REVIEWS
    stops = {r["transaction_id"]: r["corrected_proposal"]["new_stop_pct"] for r in rows}
    assert stops == {t: round(1 + i / 10, 1) for i, t in enumerate(tids)}


def test_train_now_needs_the_admin_key_and_shows_progress_and_result(desk: Desk) -> None:
    assert desk.http("POST", "/trainer/train", json={}).status_code == 403
    desk.keys("2")
    desk.until("document.getElementById('btn-train') !== null")
    desk.driver.find_element("id", "btn-train").click()
    desk.until("document.getElementById('train-error').textContent.includes('403')")
    assert not desk.js("window.desk.train.running")

    desk.driver.find_element("id", "hdr-admin").send_keys(ADMIN_KEY, "\t")
    desk.driver.find_element("id", "btn-train").click()
    desk.until("window.desk.train.result !== null", 400)
    result = desk.js("window.desk.train.result")
    print("\ntrain now:", result["reason"], "progress seen:", desk.js("window.desk.train.seen"))
    assert result["examples"] >= REVIEWS, result
    assert desk.js("window.desk.train.seen.length") >= 1  # progress shown while it ran
    assert result["reason"] in desk.driver.find_element("id", "train-result").text
    desk.until("document.querySelector('#adapters tr[data-version]') !== null", 30)
    version = desk.js("document.querySelector('#adapters tr[data-version]').dataset.version")
    assert result.get("version") in (None, version)
    assert desk.js("document.querySelectorAll('#plot-agreement circle').length") >= 1
    assert desk.js("document.querySelectorAll('#plot-corrections polyline').length") == 1


def test_the_dgm_view_shows_a_mutate_variant_and_rollback_needs_the_admin_key(desk: Desk) -> None:
    from selenium.webdriver.common.keys import Keys
    out = subprocess.run([sys.executable, "-c", "from osiris_core.cli import main; main()", "dgm",
                          "--once", "--planner", "mutate", "--json", "-c", str(desk.config)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    variant = res["iterations"][0]["id"]
    desk.keys("3")
    desk.until(f"document.querySelector('#lineage [data-variant=\"{variant}\"]') !== null", 60)
    assert desk.js("document.querySelector('#lineage [data-variant=\"0\"]') !== null")  # its root
    print("\ndgm:", res["iterations"][0]["decision"], "live", res["live"])

    assert desk.http("POST", "/dgm/rollback", json={}).status_code == 403
    admin = desk.driver.find_element("id", "hdr-admin")
    admin.send_keys(Keys.CONTROL, "a")
    admin.send_keys(Keys.BACKSPACE, Keys.TAB)  # the API key alone
    desk.driver.find_element("id", "btn-rollback").click()
    desk.until("document.getElementById('rollback-result').textContent.includes('403')")
    live_before = desk.js("document.getElementById('slot-live').textContent")

    assert live_before == "0"  # one mutate iteration seldom beats the seed: serve it by hand
    source = (desk.config.parent / "data" / "dgm" / "variants" / variant / "policy.py").read_text()
    for op, args in (("policy_shadow", {"variant": variant, "source": source}),
                     ("policy_promote", {"variant": variant})):
        desk.request("osiris.orchestrator.control", {"op": op, "args": args})
    desk.until(f"window.desk.health.actors.find(a => a.name === 'orchestrator')"
               f".facts.policy.live === '{variant}'", 30)
    admin.send_keys(ADMIN_KEY, "\t")
    desk.driver.find_element("id", "btn-rollback").click()
    desk.until("window.desk.rollback && !window.desk.rollback.text.includes('403')", 60)
    assert desk.js("window.desk.rollback.ok"), desk.js("window.desk.rollback.text")
    assert f"rolled back from {variant}" in desk.driver.find_element("id", "rollback-result").text
    desk.until("document.getElementById('slot-live').textContent === '0' && "
               f"document.getElementById('slot-previous').textContent === '{variant}'", 30)
    # the archive records it, and the lineage shows it (the dgm's event refreshes the view)
    desk.until(f"document.querySelector('#lineage [data-variant=\"{variant}\"]')"
               ".textContent.includes('rolled_back')", 30)
