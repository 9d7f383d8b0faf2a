// The review desk: plain JS, no build step, nothing fetched from elsewhere. Every request
// carries the API key as a header (never in a URL); live events come from /events read as a
// stream (EventSource cannot send headers). window.desk is the page's state (tests read it).
"use strict";
(function () {
  const EVENTS = ["phi3.proposal.created", "phi3.proposal.assessed", "advice.generated",
    "osiris.runs.completed", "phi3.feedback.submitted", "osiris.adapters.published",
    "osiris.dgm.events"];
  const VIEWS = [["review", "Review"], ["learning", "Learning"], ["dgm", "Self-improvement"],
    ["runtime", "Runtime"]];
  const desk = window.desk = {
    state: "starting", conn: "closed", view: "review", proposals: [], byTid: {}, cursor: -1,
    editing: false, posted: 0, refusedInPage: 0, errors: [], schema: null, feedback: [],
    reports: null, train: { running: false, progress: null, result: null, seen: [] }, dgm: [],
    health: null, rollback: null,
  };
  const keys = { api: sessionStorage.getItem("osiris.apiKey") || "",
    admin: sessionStorage.getItem("osiris.adminKey") || "" };
  const $ = (id) => document.getElementById(id);

  function h(tag, attrs, ...kids) {
    const ns = ["svg", "line", "circle", "text", "path", "polyline", "rect"].includes(tag)
      ? "http://www.w3.org/2000/svg" : null;
    const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  function say(text, bad) {
    const m = $("msg");
    m.textContent = text;
    m.className = bad ? "error" : "";
    if (bad) desk.errors.push(text);
  }

  // --- HTTP -------------------------------------------------------------------------------
  function headers(admin, json) {
    const out = {};
    if (keys.api) out["X-API-Key"] = keys.api;
    if (admin && keys.admin) out["X-Admin-Key"] = keys.admin;
    if (json) out["Content-Type"] = "application/json";
    return out;
  }

  async function api(path, opts) {
    const o = opts || {};
    const r = await fetch(path, { method: o.method || "GET", headers: headers(o.admin, o.body !== undefined),
      body: o.body === undefined ? undefined : JSON.stringify(o.body), cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, ok: r.ok, body };
  }

  function errorText(res) {
    const b = res.body || {};
    const what = typeof b.error === "string" ? b.error : (b.detail || JSON.stringify(b));
    return `${res.status}: ${what}${b.field ? ` (field ${b.field})` : ""}`;
  }

  // --- the key prompt ---------------------------------------------------------------------
  async function start() {
    const probe = await api("/actors/");
    if (probe.status === 401) return lock(keys.api ? "the key was refused (401)" : "");
    if (!probe.ok) return say("the gateway answered " + errorText(probe), true);
    unlock(probe.body);
  }

  function lock(why) {
    desk.state = "locked";
    $("app").hidden = true;
    $("app").replaceChildren();
    $("keyprompt").hidden = false;
    $("keyerror").textContent = why;
    $("apikey").focus();
  }

  $("keyprompt").addEventListener("submit", (ev) => {
    ev.preventDefault();
    keys.api = $("apikey").value.trim();
    keys.admin = $("adminkey").value.trim();
    sessionStorage.setItem("osiris.apiKey", keys.api);
    sessionStorage.setItem("osiris.adminKey", keys.admin);
    $("apikey").value = "";
    $("adminkey").value = "";
    start();
  });

  async function unlock(health) {
    $("keyprompt").hidden = true;
    desk.health = health;
    build();
    desk.state = "open";
    const schema = await api("/schema/openapi.json");
    desk.schema = schema.ok ? schema.body.components.schemas.TradeProposal : null;
    if (!desk.schema) say("no proposal schema from /schema/openapi.json: edits are checked by the gateway only", true);
    stream();
    await backlog();
    setInterval(refreshHealth, 2000);
  }

  // --- layout -----------------------------------------------------------------------------
  const views = {};
  function build() {
    const tabs = $("tabs");
    tabs.hidden = false;
    tabs.replaceChildren(...VIEWS.map(([id, label], i) =>
      h("button", { id: "tab-" + id, onclick: () => show(id), title: `key ${i + 1}` }, label)),
    h("input", { id: "hdr-admin", type: "password", autocomplete: "off", placeholder: "admin key",
      title: "for train now and rollback; kept in this tab only", value: keys.admin,
      onchange: (ev) => { keys.admin = ev.target.value.trim(); sessionStorage.setItem("osiris.adminKey", keys.admin); } }));
    views.review = h("section", { id: "view-review" });
    views.learning = h("section", { id: "view-learning", hidden: true });
    views.dgm = h("section", { id: "view-dgm", hidden: true });
    views.runtime = h("section", { id: "view-runtime", hidden: true });
    $("app").replaceChildren(views.review, views.learning, views.dgm, views.runtime);
    $("app").hidden = false;
    show("review");
  }

  function show(id) {
    desk.view = id;
    for (const [v] of VIEWS) {
      views[v].hidden = v !== id;
      $("tab-" + v).className = v === id ? "on" : "";
    }
    if (id === "learning") refreshLearning();
    if (id === "dgm") refreshDgm();
    render();
  }

  function render() {
    if (desk.state !== "open") return;
    if (desk.view === "review") renderReview();
    if (desk.view === "learning") renderLearning();
    if (desk.view === "dgm") renderDgm();
    if (desk.view === "runtime") renderRuntime();
  }

  // --- live events ------------------------------------------------------------------------
  async function stream() {
    for (let wait = 500; ; wait = Math.min(wait * 2, 10000)) {
      try {
        const r = await fetch("/events?subjects=" + encodeURIComponent(EVENTS.join(",")),
          { headers: headers(false, false), cache: "no-store" });
        if (r.status === 401) return lock("the key was refused (401)");
        if (!r.ok) throw new Error(errorText({ status: r.status, body: await r.json().catch(() => null) }));
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf = (buf + value).replace(/\r\n/g, "\n");  // Litestar ends lines with CRLF
          let at;
          while ((at = buf.indexOf("\n\n")) >= 0) {
            const frame = buf.slice(0, at);
            buf = buf.slice(at + 2);
            frameIn(frame);
            wait = 500;
          }
        }
      } catch (e) {
        say("live events: " + e.message, true);
      }
      setConn("reconnecting");
      await new Promise((ok) => setTimeout(ok, wait));
    }
  }

  function setConn(s) {
    desk.conn = s;
    $("conn").textContent = s === "open" ? "live" : s;
  }

  function frameIn(frame) {
    let event = "", data = "";
    for (const line of frame.split("\n")) {
      if (line.startsWith(":")) { if (line.includes("subscribed")) setConn("open"); continue; }
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
    }
    if (!event || !data) return;
    let body;
    try { body = JSON.parse(data); } catch (e) { return; }
    onEvent(event, body);
  }

  function onEvent(subject, e) {
    if (subject === "phi3.proposal.created") {
      const p = upsert(e.transaction_id, { created: e.timestamp, prompt: e.prompt, proposal: e.phi3_proposal });
      stamp(p);
    } else if (subject === "phi3.proposal.assessed") {
      upsert(e.transaction_id, { assessment: e.hermes_assessment, proposal: e.phi3_proposal });
    } else if (subject === "advice.generated") {
      upsert(e.transaction_id, { advice: { approved: e.approved, reasons: e.reasons || [] } }, true);
    } else if (subject === "osiris.runs.completed") {
      if (e.transaction_id) upsert(e.transaction_id, { run: { status: e.status, error: e.error } }, true);
    } else if (subject === "phi3.feedback.submitted") {
      desk.feedback.push({ timestamp: e.timestamp || new Date().toISOString(),
        corrected: !!e.corrected_proposal, transaction_id: e.transaction_id });
      const p = desk.byTid[e.transaction_id];
      if (p && !p.review) p.review = e.feedback_type;
      if (desk.view === "learning") renderLearning();
    } else if (subject === "osiris.adapters.published") {
      if (desk.view === "learning") refreshLearning();
    } else if (subject === "osiris.dgm.events") {
      // the event carries the variant as it is now: show it at once (the store follows)
      const v = { ...(e.variant || {}), event: e.kind };
      dgmSeen[v.id] = v;
      desk.dgm = desk.dgm.filter((r) => r.id !== v.id).concat([v]);
      if (desk.view === "dgm") renderDgm();
    }
    if (desk.view === "review") renderReview();
  }

  function upsert(tid, fields, onlyKnown) {
    let p = desk.byTid[tid];
    if (!p) {
      if (onlyKnown) { p = { tid, pending: true }; desk.byTid[tid] = p; Object.assign(p, fields); return p; }
      p = { tid, review: null };
      desk.byTid[tid] = p;
    }
    const wasPending = p.pending;
    Object.assign(p, fields);
    if ((wasPending || !desk.proposals.includes(p)) && p.proposal) {
      delete p.pending;
      desk.proposals.push(p);
      if (desk.cursor < 0 || (desk.proposals[desk.cursor] || {}).review) desk.cursor = nextOpen(-1);
    }
    return p;
  }

  function stamp(p) {
    // what served this proposal, as the runtime reports it on arrival
    const h0 = desk.health;
    if (!h0 || p.adapter !== undefined) return;
    const phi3 = (h0.actors || []).find((a) => a.name === "phi3");
    const orch = (h0.actors || []).find((a) => a.name === "orchestrator");
    p.adapter = phi3 ? (phi3.adapter || "base") : "?";
    p.policy = orch && orch.facts && orch.facts.policy ? orch.facts.policy.live : "?";
  }

  async function backlog() {
    const [props, advice, fb] = await Promise.all([api("/store/proposals?limit=200"),
      api("/store/advice?limit=200"), api("/store/feedback?limit=500")]);
    if (!props.ok) say("proposals: " + errorText(props), true);
    const reviewed = {};
    if (fb.ok) {
      for (const r of fb.body.rows) {
        reviewed[r.transaction_id] = r.feedback_type;
        desk.feedback.push({ timestamp: r.timestamp, corrected: !!r.corrected_proposal, transaction_id: r.transaction_id });
      }
    }
    const adv = {};
    if (advice.ok) for (const r of advice.body.rows) adv[r.transaction_id] = { approved: r.approved, reasons: r.reasons || [] };
    const rows = props.ok ? props.body.rows.slice().reverse() : [];
    for (const r of rows) {
      if (desk.byTid[r.transaction_id] && !desk.byTid[r.transaction_id].pending) continue;
      const p = upsert(r.transaction_id, { created: r.timestamp, prompt: r.prompt, proposal: r.phi3_proposal,
        assessment: r.hermes_assessment || undefined, review: reviewed[r.transaction_id] || null,
        adapter: "not recorded", policy: "not recorded" });
      if (adv[r.transaction_id] && !p.advice) p.advice = adv[r.transaction_id];
    }
    desk.proposals.sort((a, b) => String(a.created).localeCompare(String(b.created)));
    desk.cursor = nextOpen(-1);
    render();
  }

  function nextOpen(from) {
    const n = desk.proposals.length;
    for (let k = 1; k <= n; k++) {  // the next one to review after `from`, wrapping around
      const i = (from + k + n) % n;
      if (!desk.proposals[i].review) return i;
    }
    return n ? Math.min(Math.max(from, 0), n - 1) : -1;
  }

  // --- review -----------------------------------------------------------------------------
  const ORDER = ["ticker", "action", "side", "new_stop_pct", "new_target_pct", "confidence", "rationale"];

  function fieldNames() {
    const props = desk.schema && desk.schema.properties ? Object.keys(desk.schema.properties) : [];
    return ORDER.filter((f) => !props.length || props.includes(f)).concat(props.filter((f) => !ORDER.includes(f)));
  }

  function renderReview(whole) {
    const v = views.review;
    const open = desk.proposals.filter((p) => !p.review).length;
    const list = h("ul", { class: "queue", id: "queue" }, desk.proposals.map((p, i) =>
      h("li", { class: (i === desk.cursor ? "cur " : "") + (p.review ? "done" : ""), "data-tid": p.tid,
        onclick: () => { desk.cursor = i; desk.editing = false; renderReview(true); } },
      `${p.proposal.ticker} ${p.proposal.side} ${p.proposal.action}`, p.review ? ` · ${p.review}` : "")));
    const cur = desk.proposals[desk.cursor];
    const shown = $("current");
    if (!whole && cur && shown && shown.dataset.tid === cur.tid && v.querySelector("#queue")
        && (desk.editing || shown.contains(document.activeElement))) {
      // the reviewer is typing: new events update the queue, never the card under their hands
      v.querySelector("#queue").replaceWith(list);
      v.querySelector(".keys").firstChild.textContent = `${desk.proposals.length} proposals, ${open} to review · `;
      return;
    }
    v.replaceChildren(h("p", { class: "keys" },
      `${desk.proposals.length} proposals, ${open} to review · `,
      ...[["j/k", "next/previous"], ["a", "accept"], ["r", "reject"], ["e", "edit"], ["Enter", "submit"],
        ["Esc", "cancel"], ["c", "comment"], ["s", "speak"], ["1-4", "views"]].map(([k, w]) =>
        h("span", {}, h("kbd", {}, k), ` ${w}  `))),
    h("div", { class: "cols" }, h("div", { class: "card" }, list), cur ? card(cur) : h("p", { class: "dim", id: "empty" },
      "No proposal yet: they appear here as the orchestrator makes them.")));
    const li = list.querySelector("li.cur");
    if (li && li.scrollIntoView) li.scrollIntoView({ block: "nearest" });
  }

  function card(p) {
    const fields = h("div", { class: "fields", id: "fields" });
    const shownP = p.corrected || p.proposal;  // once corrected, what the reviewer sent
    for (const f of fieldNames()) {
      const val = shownP[f];
      fields.append(h("label", { for: "f-" + f, text: f }));
      fields.append(desk.editing
        ? h("input", { id: "f-" + f, name: f, value: val === undefined ? "" : String(val), onkeydown: editKey })
        : h("span", { id: "v-" + f, text: val === undefined ? "" : String(val) }));
    }
    const adv = p.advice;
    return h("div", { id: "current", "data-tid": p.tid },
      h("div", { class: "card" },
        h("h2", {}, `Proposal ${p.tid.slice(0, 8)} `, h("span", { class: "dim" }, p.created || ""),
          p.review ? h("span", { class: "good" }, ` · reviewed: ${p.review}`) : null),
        fields,
        h("p", {}, "comment ", h("textarea", { id: "comment", rows: 2, onkeydown: editKey, oninput: (ev) => { p.comment = ev.target.value; } }, p.comment || "")),
        h("p", {}, h("button", { class: "act", id: "btn-accept", onclick: () => accept() }, "accept (a)"), " ",
          h("button", { class: "act", id: "btn-reject", onclick: () => reject() }, "reject (r)"), " ",
          desk.editing
            ? h("button", { class: "act", id: "btn-submit", onclick: () => submitEdit() }, "submit correction (Enter)")
            : h("button", { class: "act", id: "btn-edit", onclick: () => edit() }, "edit (e)")),
        h("p", { id: "card-error", class: "error" })),
      h("div", { class: "grid2" },
        h("div", { class: "card" }, h("h2", {}, "Risk gate"),
          adv ? h("p", { id: "gate", class: adv.approved ? "good" : "error" },
            adv.approved ? "approved" : "rejected", adv.reasons.length ? ": " + adv.reasons.join("; ") : "")
            : h("p", { class: "dim", id: "gate" }, "no decision recorded (a direct proposal, or not yet)"),
          p.run ? h("p", { class: "dim" }, `run: ${p.run.status}${p.run.error ? " — " + p.run.error : ""}`) : null,
          h("p", { class: "dim", id: "served-by" }, `adapter ${p.adapter || "?"} · policy variant ${p.policy || "?"}`)),
        h("div", { class: "card" }, h("h2", {}, "Hermes' assessment ",
          p.assessment ? h("button", { id: "btn-speak", onclick: () => speak(p) }, "speak (s)") : null),
          h("pre", { id: "assessment" }, p.assessment || "none (the gate rejected it, or not yet)"))),
      h("div", { class: "card" }, h("h2", {}, "Market summary and prompt"), h("pre", { id: "prompt" }, p.prompt || "")));
  }

  function editKey(ev) {
    if (ev.key === "Enter" && (ev.target.tagName === "INPUT" || ev.ctrlKey)) {
      ev.preventDefault();
      if (desk.editing) submitEdit(); else ev.target.blur();
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      ev.target.blur();
      if (desk.editing) { desk.editing = false; renderReview(true); }
    }
  }

  function edit() {
    if (!desk.proposals[desk.cursor]) return;
    desk.editing = true;
    renderReview(true);
    const first = document.querySelector("#fields input");
    if (first) { first.focus(); first.select(); }
  }

  function comment() {
    const c = $("comment");
    return c ? c.value.trim() : "";
  }

  // the proposal schema, as the gateway serves it (msgspec's JSON Schema of TradeProposal)
  function coerce(f, text) {
    const t = ((desk.schema || {}).properties || {})[f] || {};
    const types = [].concat(t.type || (t.anyOf || []).map((x) => x.type)).filter(Boolean);
    const s = text.trim();
    if ((types.includes("number") || types.includes("integer")) && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(s)) return Number(s);
    return text;
  }

  function validate(obj, schema, path) {
    const errs = [];
    if (!schema) return errs;
    const props = schema.properties || {};
    for (const r of schema.required || []) if (!(r in obj)) errs.push([`${path}.${r}`, "required"]);
    for (const k of Object.keys(obj)) {
      const s = props[k];
      const at = `${path}.${k}`;
      if (!s) { if (schema.additionalProperties === false) errs.push([at, "unknown field"]); continue; }
      const v = obj[k];
      const want = [].concat(s.type || (s.anyOf || []).map((x) => x.type)).filter(Boolean);
      const got = v === null ? "null" : Number.isInteger(v) ? "integer" : typeof v === "number" ? "number" : typeof v;
      const fits = !want.length || want.some((w) => w === got || (w === "number" && got === "integer"));
      if (!fits) { errs.push([at, `expected ${want.join(" or ")}, got ${JSON.stringify(v)}`]); continue; }
      if (s.enum && !s.enum.includes(v)) errs.push([at, `must be one of ${s.enum.join(", ")}`]);
      if (typeof v === "number") {
        if (!Number.isFinite(v)) errs.push([at, "must be a finite number"]);
        if (s.minimum !== undefined && v < s.minimum) errs.push([at, `must be ≥ ${s.minimum}`]);
        if (s.maximum !== undefined && v > s.maximum) errs.push([at, `must be ≤ ${s.maximum}`]);
        if (s.exclusiveMinimum !== undefined && v <= s.exclusiveMinimum) errs.push([at, `must be > ${s.exclusiveMinimum}`]);
        if (s.exclusiveMaximum !== undefined && v >= s.exclusiveMaximum) errs.push([at, `must be < ${s.exclusiveMaximum}`]);
      }
      if (typeof v === "string") {
        if (s.minLength !== undefined && v.length < s.minLength) errs.push([at, `at least ${s.minLength} characters`]);
        if (s.maxLength !== undefined && v.length > s.maxLength) errs.push([at, `at most ${s.maxLength} characters`]);
        if (s.pattern && !new RegExp(s.pattern).test(v)) errs.push([at, `must match ${s.pattern}`]);
      }
    }
    return errs;
  }
  desk.validate = (obj) => validate(obj, desk.schema, "corrected_proposal");

  async function submitEdit() {
    const p = desk.proposals[desk.cursor];
    if (!p || !desk.editing) return;
    const corrected = {};
    for (const input of document.querySelectorAll("#fields input")) {
      input.classList.remove("bad");
      corrected[input.name] = coerce(input.name, input.value);
    }
    const errs = validate(corrected, desk.schema, "corrected_proposal");
    if (errs.length) {
      desk.refusedInPage += 1;
      for (const [at] of errs) { const i = $("f-" + at.split(".").pop()); if (i) i.classList.add("bad"); }
      const text = "not sent: " + errs.map(([at, why]) => `${at}: ${why}`).join("; ");
      $("card-error").textContent = text;
      say(text, true);
      return;
    }
    await send(p, { transaction_id: p.tid, feedback_type: "correction",
      feedback_content: { comment: comment() }, corrected_proposal: corrected }, "corrected");
  }

  function accept() {
    const p = desk.proposals[desk.cursor];
    // an accepted proposal is a correction to itself: the trainer learns it as right
    if (p) send(p, { transaction_id: p.tid, feedback_type: "rating",
      feedback_content: { rating: 1, verdict: "accept", comment: comment() }, corrected_proposal: p.proposal }, "accepted");
  }

  function reject() {
    const p = desk.proposals[desk.cursor];
    if (p) send(p, { transaction_id: p.tid, feedback_type: "rating",
      feedback_content: { rating: -1, verdict: "reject", comment: comment() } }, "rejected");
  }

  async function send(p, body, verdict) {
    const res = await api("/feedback/phi3/", { method: "POST", body });
    if (!res.ok) {
      const text = "feedback refused: " + errorText(res);
      const el = $("card-error");
      if (el) el.textContent = text;
      return say(text, true);
    }
    desk.posted += 1;
    p.review = verdict;
    if (body.corrected_proposal) p.corrected = body.corrected_proposal;
    p.feedbackId = res.body && res.body.feedback_id;
    desk.editing = false;
    say(`${verdict} ${p.tid.slice(0, 8)}: ${res.body.message || "stored"}`);
    desk.cursor = nextOpen(desk.cursor);
    renderReview(true);
  }

  async function speak(p) {
    const r = await fetch("/speak", { method: "POST", headers: headers(false, true),
      body: JSON.stringify({ text: p.assessment.slice(0, 500) }) });
    if (!r.ok) return say("speak: " + errorText({ status: r.status, body: await r.json().catch(() => null) }), true);
    const url = URL.createObjectURL(await r.blob());
    const audio = new Audio(url);
    audio.onended = () => URL.revokeObjectURL(url);
    audio.play().catch((e) => say("speak: " + e.message, true));
  }

  document.addEventListener("keydown", (ev) => {
    if (desk.state !== "open" || ev.metaKey || ev.altKey) return;
    const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement && document.activeElement.tagName);
    if (typing || ev.ctrlKey) return;
    const n = "1234".indexOf(ev.key);
    if (n >= 0) { show(VIEWS[n][0]); return; }
    if (desk.view !== "review") return;
    const act = { j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
      a: accept, r: reject, e: edit, s: () => desk.proposals[desk.cursor] && desk.proposals[desk.cursor].assessment && speak(desk.proposals[desk.cursor]),
      c: () => { const c = $("comment"); if (c) c.focus(); }, Enter: () => (desk.editing ? submitEdit() : edit()) }[ev.key];
    if (act) { ev.preventDefault(); act(); }
  });

  function move(d) {
    if (!desk.proposals.length) return;
    desk.cursor = Math.max(0, Math.min(desk.proposals.length - 1, desk.cursor + d));
    desk.editing = false;
    renderReview(true);
  }

  // --- plots (small inline SVG) -----------------------------------------------------------
  function plot(id, title, series, opts) {
    const W = 460, H = 170, L = 40, B = 24, T = 16;
    const pts = series.flatMap((s) => s.points);
    const svg = h("svg", { id, width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    svg.append(h("text", { x: L, y: 11 }, title));
    if (!pts.length) { svg.append(h("text", { x: L, y: H / 2 }, "nothing yet")); return svg; }
    const xs = pts.map((p) => p.x), ys = pts.flatMap((p) => [p.y, p.lo ?? p.y, p.hi ?? p.y]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    const y0 = opts.y0 ?? Math.min(...ys), y1 = opts.y1 ?? Math.max(...ys);
    const sx = (x) => L + (x1 === x0 ? (W - L - 10) / 2 : (x - x0) / (x1 - x0) * (W - L - 10));
    const sy = (y) => H - B - (y1 === y0 ? (H - B - T) / 2 : (y - y0) / (y1 - y0) * (H - B - T));
    svg.append(h("line", { x1: L, y1: H - B, x2: W - 5, y2: H - B, stroke: "#bbb" }));
    svg.append(h("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#bbb" }));
    svg.append(h("text", { x: 2, y: sy(y1) + 4 }, opts.fmt(y1)), h("text", { x: 2, y: sy(y0) }, opts.fmt(y0)));
    for (const s of series) {
      if (s.line) svg.append(h("polyline", { fill: "none", stroke: s.color, "stroke-width": 1.5,
        points: s.points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ") }));
      for (const p of s.points) {
        if (p.lo !== undefined) svg.append(h("line", { x1: sx(p.x), x2: sx(p.x), y1: sy(p.lo), y2: sy(p.hi), stroke: s.color }));
        if (!s.line || s.dots) svg.append(h("circle", { cx: sx(p.x), cy: sy(p.y), r: 3, fill: s.color }));
        if (p.label) svg.append(h("text", { x: sx(p.x) - 10, y: H - 8 }, p.label));
      }
    }
    return svg;
  }

  const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(v * 100)} %`);
  const iv = (a) => (a ? `${pct(a.mean)} [${pct(a.lo)}–${pct(a.hi)}]` : "–");

  // --- learning ---------------------------------------------------------------------------
  async function refreshLearning() {
    const [rep, st] = await Promise.all([api("/trainer/reports"), api("/actors/trainer")]);
    desk.reports = rep.ok ? rep.body : { reports: [], live: null, error: errorText(rep) };
    if (st.ok) trainerFacts(st.body.status.facts || {});
    renderLearning();
  }

  function trainerFacts(f) {
    desk.train.running = !!f.running_since;
    desk.train.progress = f.progress;
    if (f.running_since && f.progress && desk.train.seen.at(-1) !== f.progress) desk.train.seen.push(f.progress);
    desk.train.last = f.last_run;
    desk.train.live = f.adapter_version;
  }

  function renderLearning() {
    const v = views.learning;
    const r = desk.reports || { reports: [] };
    const rows = r.reports.map((x) => h("tr", { "data-version": x.version },
      h("td", {}, x.version, x.version === r.live ? h("b", { class: "good" }, " live") : ""),
      h("td", { class: x.published ? "good" : "error" }, x.published ? "published" : "refused"),
      h("td", {}, x.reason || ""), h("td", {}, `${x.train_examples ?? "?"}/${x.eval_examples ?? "?"}`),
      h("td", {}, gateTable(x.report || {}))));
    const byVersion = r.reports.slice().reverse().map((x, i) => {
      const a = ((x.report || {}).candidate || {}).agreement;
      return a ? { x: i, y: a.mean, lo: a.lo, hi: a.hi, label: x.version.slice(-6) } : null;
    }).filter(Boolean);
    const fb = desk.feedback.filter((f) => f.corrected).map((f) => Date.parse(f.timestamp)).filter((t) => !isNaN(t)).sort();
    const cum = fb.map((t, i) => ({ x: t, y: i + 1 }));
    const t = desk.train;
    v.replaceChildren(
      h("div", { class: "card" }, h("h2", {}, "Train now"),
        h("p", {}, h("button", { class: "act", id: "btn-train", disabled: t.running, onclick: () => trainNow(false) }, "train now"), " ",
          h("button", { class: "act", id: "btn-train-force", disabled: t.running, onclick: () => trainNow(true) }, "train now, even without new corrections"),
          h("span", { class: "dim" }, " (admin key)")),
        h("p", { id: "train-progress", class: "dim" }, t.running ? `running: ${t.progress || "starting"}` : (t.progress ? `last: ${t.progress}` : "")),
        h("p", { id: "train-result", class: t.result ? (t.result.published ? "good" : "error") : "" },
          t.result ? `${t.result.published ? "published " + t.result.version : "not published"}: ${t.result.reason}` : ""),
        h("p", { id: "train-error", class: "error" }, t.error || "")),
      h("div", { class: "grid2" },
        h("div", { class: "card" }, plot("plot-agreement", "served agreement of each candidate (95 % interval)",
          [{ color: "#2456c6", points: byVersion }], { y0: 0, y1: 1, fmt: pct })),
        h("div", { class: "card" }, plot("plot-corrections", "corrections stored over time",
          [{ color: "#17803d", line: true, points: cum }], { y0: 0, fmt: (y) => String(Math.round(y)) }))),
      h("div", { class: "card" }, h("h2", {}, "Adapters ", h("span", { class: "dim" }, `live: ${r.live || "none"}`),
        r.live_served_agreement ? h("span", { class: "dim" }, ` (served agreement ${iv(r.live_served_agreement)})`) : null),
      r.error ? h("p", { class: "error" }, r.error) : null,
      h("table", { id: "adapters" }, h("tr", {}, ["version", "", "why", "train/held-out", "gate table (served)"].map((c) => h("th", {}, c))), rows)));
  }

  function gateTable(rep) {
    const names = ["constant", "base", "few_shot", "live", "candidate"].filter((k) => rep[k]);
    const g = rep.gate || {};
    return h("table", { class: "gate" },
      names.map((k) => h("tr", {}, h("td", {}, k), h("td", {}, iv(rep[k].agreement)), h("td", { class: "dim" }, `n ${rep[k].n ?? "?"}`))),
      g.diff ? h("tr", {}, h("td", {}, "gate"), h("td", { class: g.passed ? "good" : "error" }, `${g.passed ? "passed" : "refused"} Δ ${iv(g.diff)}`)) : null);
  }

  let trainPoll = null;
  async function trainNow(force) {
    desk.train.error = null;
    desk.train.result = null;
    const before = desk.train.last && desk.train.last.finished;
    const res = await api("/trainer/train", { method: "POST", admin: true, body: { force } });
    if (res.status !== 200 && res.status !== 202) {
      desk.train.error = "train now refused: " + errorText(res);
      say(desk.train.error, true);
      return renderLearning();
    }
    if (res.status === 200) { desk.train.result = res.body; say("training: " + res.body.reason); return refreshLearning(); }
    desk.train.running = true;
    renderLearning();
    clearInterval(trainPoll);
    trainPoll = setInterval(async () => {
      const st = await api("/actors/trainer");
      if (!st.ok) return;
      trainerFacts(st.body.status.facts || {});
      const last = desk.train.last;
      if (!desk.train.running && last && last.finished !== before) {
        clearInterval(trainPoll);
        desk.train.result = last;
        say("training: " + last.reason);
        return refreshLearning();
      }
      if (desk.view === "learning") renderLearning();
    }, 1000);
  }

  // --- self-improvement -------------------------------------------------------------------
  let dgmBusy = false;
  const dgmSeen = {};
  async function refreshDgm() {
    if (dgmBusy) return;
    dgmBusy = true;
    try {
      const res = await api("/store/dgm_archive?limit=500");
      // a row the store has not caught up with yet is shown as its newest event says
      desk.dgm = (res.ok ? res.body.rows : []).map((r) => {
        const seen = dgmSeen[r.id];
        return seen && (seen.revision || 0) >= (r.revision || 0) ? seen : r;
      });
      for (const v of Object.values(dgmSeen)) if (!desk.dgm.some((r) => r.id === v.id)) desk.dgm.push(v);
      if (!res.ok) say("dgm archive: " + errorText(res), true);
      await refreshHealth();
    } finally { dgmBusy = false; }
    renderDgm();
  }

  function renderDgm() {
    const v = views.dgm;
    const rows = desk.dgm.slice().sort((a, b) => (a.iteration - b.iteration) || String(a.id).localeCompare(String(b.id)));
    const kids = {};
    for (const r of rows) (kids[r.parent ?? ""] = kids[r.parent ?? ""] || []).push(r);
    const node = (r) => h("li", { "data-variant": r.id },
      h("b", {}, r.id), ` ${r.planner} · ${r.decision}`, r.reward_full !== null && r.reward_full !== undefined ? ` · reward ${r.reward_full.toFixed(4)}` : "",
      r.why ? h("span", { class: "dim" }, ` — ${r.why}`) : null,
      kids[r.id] ? h("ul", {}, kids[r.id].map(node)) : null);
    const roots = rows.filter((r) => !r.parent || !rows.some((x) => x.id === r.parent));
    let best = -Infinity;
    const bestPts = [], allPts = [];
    for (const r of rows) {
      if (typeof r.reward_full !== "number") continue;
      best = Math.max(best, r.reward_full);
      bestPts.push({ x: r.iteration, y: best });
      allPts.push({ x: r.iteration, y: r.reward_full });
    }
    const actors = (desk.health && desk.health.actors) || [];
    const orch = actors.find((a) => a.name === "orchestrator");
    const dgm = actors.find((a) => a.name === "dgm");
    const slots = (orch && orch.facts && orch.facts.policy) || {};
    const phase = dgm && dgm.facts ? dgm.facts.phase : null;
    v.replaceChildren(
      h("div", { class: "grid2" },
        h("div", { class: "card" }, h("h2", {}, "Slots"),
          h("table", { id: "slots" }, ["live", "shadow", "previous"].map((k) => h("tr", {}, h("td", {}, k), h("td", { id: "slot-" + k }, slots[k] ?? "–")))),
          h("p", {}, h("button", { class: "act", id: "btn-rollback", onclick: rollback }, "roll back to the previous variant"), h("span", { class: "dim" }, " (admin key)")),
          h("p", { id: "rollback-result", class: desk.rollback && desk.rollback.ok ? "good" : "error" }, desk.rollback ? desk.rollback.text : ""),
          h("h2", {}, "Monitor"), h("pre", { id: "monitor" }, phase ? JSON.stringify(phase, null, 1) : "idle")),
        h("div", { class: "card" }, plot("plot-reward", "best reward by iteration (dots: each variant)",
          [{ color: "#b0b7c6", points: allPts }, { color: "#2456c6", line: true, points: bestPts }], { fmt: (y) => y.toFixed(3) }))),
      h("div", { class: "card" }, h("h2", {}, `Archive (${rows.length} variants)`),
        rows.length ? h("ul", { class: "tree", id: "lineage" }, roots.map(node)) : h("p", { class: "dim", id: "lineage" }, "empty: run osiris dgm")));
  }

  async function rollback() {
    const res = await api("/dgm/rollback", { method: "POST", admin: true, body: { reason: "by hand (the desk)" } });
    desk.rollback = { ok: res.ok, text: res.ok ? `rolled back from ${res.body.rolled_back_from}: ${res.body.message}` : "rollback refused: " + errorText(res) };
    if (!res.ok) say(desk.rollback.text, true);
    await refreshDgm();
  }

  // --- runtime ----------------------------------------------------------------------------
  async function refreshHealth() {
    const res = await api("/health");
    if (res.ok) desk.health = res.body;
    if (desk.view === "runtime") renderRuntime();
    if (desk.view === "dgm" && !dgmBusy) renderDgm();  // the slots move with the runtime
  }

  function renderRuntime() {
    const v = views.runtime;
    const hh = desk.health;
    if (!hh) { v.replaceChildren(h("p", { class: "dim" }, "waiting for /health")); return; }
    const cols = ["name", "node", "plugin", "state", "restarts", "in_flight", "handled", "errors", "adapter", "last_error"];
    v.replaceChildren(h("div", { class: "card" },
      h("h2", {}, `status ${hh.status} · ${hh.nodes} node(s) · device ${hh.device}`),
      h("table", { id: "actors" }, h("tr", {}, cols.map((c) => h("th", {}, c))),
        (hh.actors || []).map((a) => h("tr", { "data-actor": a.name }, cols.map((c) => h("td", { class: c === "state" && a.state !== "running" ? "error" : "" }, a[c] ?? "")))))));
  }

  start();
})();
