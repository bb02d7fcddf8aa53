"use strict";
// durable-rlm run report. Every text from the run goes into the page through textContent (never as
// markup), so a node's output can only ever show up as text. Rows are built when their parent is
// expanded and a transcript when its node is selected: a 1,000-node run opens at once.
(function () {
  const CHUNK = 200;
  const data = JSON.parse(document.getElementById("rlm-data").textContent);
  const nodes = data.nodes;
  const byId = new Map();
  const children = new Map();
  const tops = [];
  for (const n of nodes) {
    byId.set(n.id, n);
    children.set(n.id, []);
  }
  for (const n of nodes) {
    if (n.parent !== null && byId.has(n.parent)) children.get(n.parent).push(n);
    else tops.push(n);
  }
  const rows = new Map(); // node id -> {li, row, toggle, list, shown}
  let selected = null;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // A status as a class name: "not run" must not become two classes.
  function st(status) {
    return "st-" + String(status).replace(/[^A-Za-z0-9_-]/g, "_");
  }

  // Decimal strings as the CLI prints them (format_usd): no trailing zeros.
  function usd(v) {
    if (v === null || v === undefined) return "";
    const t = String(v).indexOf(".") < 0 ? String(v) : String(v).replace(/0+$/, "").replace(/\.$/, "");
    return "$" + t;
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "";
    if (ms < 1000) return ms + " ms";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.round(s - m * 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function count(n) {
    return Number(n).toLocaleString("en-US");
  }

  function shortId(id) {
    const i = id.lastIndexOf("/");
    return i < 0 ? id : id.slice(i + 1);
  }

  // --- header --------------------------------------------------------------------------------------

  function renderSummary() {
    const r = data.run;
    const h = document.getElementById("summary");
    h.appendChild(el("h1", null, "run " + r.run_id));
    const facts = el("div", "facts");
    const status = el("span", "status " + st(r.status), r.status);
    facts.appendChild(status);
    for (const t of [
      "tenant " + r.tenant,
      count(r.nodes) + " nodes",
      "cost " + usd(r.cost),
      "tokens " + count(r.prompt_tokens) + " in / " + count(r.completion_tokens) + " out",
      r.wall_ms === null ? "still running" : "wall " + duration(r.wall_ms),
      "report of " + r.generated_at,
    ]) {
      facts.appendChild(el("span", null, t));
    }
    h.appendChild(facts);
    const top = tops.length ? (data.transcripts || {})[tops[0].id] : null;
    if (top && top.query !== null) h.appendChild(el("div", "answer", "query: " + preview(top.query, 400)));
    if (r.answer !== null) h.appendChild(el("div", "answer", "answer: " + preview(r.answer, 400)));
    if (r.error) h.appendChild(el("div", "answer err", "reason: " + r.error));
    if (r.cut_chars !== null) {
      h.appendChild(el("div", "note", "Texts longer than " + count(r.cut_chars) +
        " characters are cut; `rlm report --full` embeds them whole."));
    }
  }

  // --- the tree ------------------------------------------------------------------------------------

  function nodeRow(n) {
    const li = el("li");
    const row = el("div", "row");
    row.dataset.id = n.id;
    const kids = children.get(n.id);
    const toggle = el("button", kids.length ? "toggle" : "toggle none", kids.length ? "▸" : "");
    toggle.type = "button";
    toggle.setAttribute("aria-label", "expand");
    row.appendChild(toggle);
    row.appendChild(el("span", "dot " + st(n.status)));
    row.appendChild(el("span", "nid", shortId(n.id)));
    row.appendChild(el("span", "kind", n.kind));
    row.appendChild(el("span", "status " + st(n.status), n.status));
    const bits = [];
    if (n.kind !== "leaf") bits.push("iter " + n.iterations);
    bits.push(usd(n.cost));
    if (n.duration_ms !== null) bits.push(duration(n.duration_ms));
    if (kids.length) bits.push(count(kids.length) + (kids.length === 1 ? " child" : " children"));
    row.appendChild(el("span", "meta", bits.join(" · ")));
    if (n.answer !== null) row.appendChild(el("span", "preview", JSON.stringify(n.answer)));
    if (n.error) row.appendChild(el("span", "err", n.error));
    li.appendChild(row);
    const entry = { li: li, row: row, toggle: toggle, list: null, shown: 0 };
    rows.set(n.id, entry);
    toggle.addEventListener("click", function (ev) {
      ev.stopPropagation();
      setExpanded(n.id, entry.list === null || entry.list.hidden);
    });
    row.addEventListener("click", function () {
      select(n.id, true);
    });
    row.tabIndex = 0;
    row.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") select(n.id, true);
      else if (ev.key === "ArrowRight") setExpanded(n.id, true);
      else if (ev.key === "ArrowLeft") setExpanded(n.id, false);
      else return;
      ev.preventDefault();
    });
    return li;
  }

  function showMore(list, items, entry) {
    const old = list.querySelector(":scope > li.more-item");
    if (old) old.remove();
    const end = Math.min(items.length, entry.shown + CHUNK);
    for (let i = entry.shown; i < end; i++) list.appendChild(nodeRow(items[i]));
    entry.shown = end;
    if (end < items.length) {
      const li = el("li", "more-item");
      const b = el("button", "more", "show " + count(Math.min(CHUNK, items.length - end)) + " more of " +
        count(items.length - end));
      b.type = "button";
      b.addEventListener("click", function () {
        showMore(list, items, entry);
      });
      li.appendChild(b);
      list.appendChild(li);
    }
  }

  function setExpanded(id, open) {
    const entry = rows.get(id);
    const kids = children.get(id);
    if (!entry || !kids.length) return;
    if (open && entry.list === null) {
      entry.list = el("ul", "tree");
      entry.li.appendChild(entry.list);
      showMore(entry.list, kids, entry);
    }
    if (entry.list) entry.list.hidden = !open;
    entry.toggle.textContent = open ? "▾" : "▸";
    entry.toggle.setAttribute("aria-label", open ? "collapse" : "expand");
  }

  function reveal(id) {
    // Expand the path from the top down, rendering more of a long child list until the node is there.
    const path = [];
    for (let n = byId.get(id); n; n = n.parent === null ? null : byId.get(n.parent)) path.unshift(n.id);
    for (let i = 0; i < path.length - 1; i++) {
      setExpanded(path[i], true);
      const entry = rows.get(path[i]);
      const kids = children.get(path[i]);
      while (!rows.has(path[i + 1]) && entry.shown < kids.length) showMore(entry.list, kids, entry);
    }
  }

  function renderTree() {
    const host = document.getElementById("tree");
    const list = el("ul", "tree");
    const entry = { shown: 0 };
    host.appendChild(list);
    showMore(list, tops, entry);
    for (const n of tops) setExpanded(n.id, true);
  }

  // --- Python highlighting -----------------------------------------------------------------------

  const KEYWORDS = new Set(("False None True and as assert async await break class continue def del elif " +
    "else except finally for from global if import in is lambda nonlocal not or pass raise return try " +
    "while with yield match case").split(" "));
  const BUILTINS = new Set(("print len range str int float list dict set tuple sorted sum min max enumerate " +
    "zip map filter any all isinstance open repr abs round type Exception ValueError KeyError " +
    "llm_query llm_query_batched rlm_query rlm_query_batched FINAL FINAL_VAR SHOW_VARS context").split(" "));
  const TOKEN = new RegExp([
    "(#[^\\n]*)",
    "((?:[rRbBuUfF]{1,2})?(?:\"\"\"[\\s\\S]*?(?:\"\"\"|$)|'''[\\s\\S]*?(?:'''|$)|\"(?:\\\\.|[^\"\\\\\\n])*\"?" +
      "|'(?:\\\\.|[^'\\\\\\n])*'?))",
    "(\\b(?:0[xXoObB][0-9a-fA-F_]+|\\d[\\d_]*(?:\\.\\d*)?(?:[eE][+-]?\\d+)?j?)\\b)",
    "([A-Za-z_][A-Za-z0-9_]*)",
  ].join("|"), "g");

  function highlight(code) {
    const pre = el("pre", "code");
    let last = 0;
    let prev = "";
    TOKEN.lastIndex = 0;
    for (let m = TOKEN.exec(code); m !== null; m = TOKEN.exec(code)) {
      if (m.index > last) pre.appendChild(document.createTextNode(code.slice(last, m.index)));
      let cls = null;
      if (m[1] !== undefined) cls = "tok-com";
      else if (m[2] !== undefined) cls = "tok-str";
      else if (m[3] !== undefined) cls = "tok-num";
      else if (KEYWORDS.has(m[4])) cls = "tok-kw";
      else if (prev === "def" || prev === "class") cls = "tok-fn";
      else if (BUILTINS.has(m[4])) cls = "tok-bi";
      pre.appendChild(cls ? el("span", cls, m[0]) : document.createTextNode(m[0]));
      prev = m[4] !== undefined ? m[4] : "";
      last = TOKEN.lastIndex;
    }
    if (last < code.length) pre.appendChild(document.createTextNode(code.slice(last)));
    return pre;
  }

  // --- the transcript ------------------------------------------------------------------------------

  function kv(pairs) {
    const dl = el("dl", "kv");
    for (const [k, v] of pairs) {
      if (v === null || v === undefined || v === "") continue;
      dl.appendChild(el("dt", null, k));
      const dd = el("dd");
      dd.dataset.key = k;
      if (v instanceof Node) dd.appendChild(v);
      else dd.textContent = String(v);
      dl.appendChild(dd);
    }
    return dl;
  }

  function nodeLink(id) {
    const a = el("a", "node", shortId(id));
    a.href = "#node=" + encodeURIComponent(id);
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      select(id, true);
    });
    return a;
  }

  function plural(n, word) {
    return count(n) + " " + word + (n === 1 ? "" : "s");
  }

  // A CLIP is {text, chars}: the text as embedded and the length of the whole.
  function cutNote(c) {
    const more = c.chars - c.text.length;
    return more > 0 ? el("div", "cut", "… " + count(more) + " more characters (rlm report --full keeps them)") : null;
  }

  function block(host, label, c, cls) {
    if (c === null || c === undefined) return;
    if (label) host.appendChild(el("div", "label", label + " (" + plural(c.chars, "char") + ")"));
    host.appendChild(cls === "code" ? highlight(c.text) : el("pre", cls, c.text));
    const note = cutNote(c);
    if (note) host.appendChild(note);
  }

  function preview(c, limit) {
    if (c === null || c === undefined) return "";
    const max = limit || 160;
    const t = c.text.length > max ? c.text.slice(0, max - 1) + "…" : c.text;
    return t + (c.chars > t.length ? " [" + plural(c.chars, "char") + "]" : "");
  }

  function subcallTable(calls) {
    const table = el("table", "subcalls");
    const head = el("tr");
    for (const h of ["child", "kind", "status", "cost", "time", "prompt", "answer"]) head.appendChild(el("th", null, h));
    table.appendChild(head);
    for (const s of calls) {
      const tr = el("tr");
      const idCell = el("td");
      if (s.node_id !== null && byId.has(s.node_id)) idCell.appendChild(nodeLink(s.node_id));
      else idCell.textContent = s.node_id === null ? "(starting)" : shortId(s.node_id);
      tr.appendChild(idCell);
      tr.appendChild(el("td", null, s.kind));
      tr.appendChild(el("td", "status " + st(s.status), s.status));
      tr.appendChild(el("td", null, usd(s.cost)));
      tr.appendChild(el("td", null, duration(s.duration_ms)));
      tr.appendChild(el("td", null, preview(s.prompt)));
      tr.appendChild(el("td", null, s.answer !== null ? preview(s.answer) : s.error || ""));
      table.appendChild(tr);
    }
    return table;
  }

  function renderCell(c) {
    const box = el("div", "cell " + st(c.status));
    box.dataset.cell = String(c.index);
    const facts = [c.status];
    if (c.duration_ms !== null) facts.push(duration(c.duration_ms));
    if (c.subcalls.length) facts.push(plural(c.subcalls.length, "sub-call"));
    if (c.chars_cut) facts.push(count(c.chars_cut) + " chars of output cut by the sandbox");
    box.appendChild(el("h4", null, "cell " + (c.index + 1) + " · " + facts.join(" · ")));
    block(box, null, c.code, "code");
    if (c.stdout.chars) block(box, "stdout", c.stdout, "stdout");
    if (c.stderr.chars) block(box, "stderr", c.stderr, "stderr");
    block(box, "error", c.error, "error");
    if (c.subcalls.length) box.appendChild(subcallTable(c.subcalls));
    if (c.answer !== null) block(box, c.ready ? "final answer" : "answer so far (not final)", c.answer, "answer");
    return box;
  }

  function renderIteration(it, leaf) {
    const sec = el("section", "iteration");
    sec.dataset.iteration = String(it.number);
    const r = it.reply;
    const facts = [];
    if (r !== null) {
      if (r.forced_final) facts.push("forced final request");
      facts.push(count(r.prompt_tokens) + " in / " + count(r.completion_tokens) + " out", usd(r.cost));
      if (r.duration_ms !== null) facts.push(duration(r.duration_ms));
    } else {
      facts.push("waiting for the model");
    }
    sec.appendChild(el("h3", null, (leaf ? "Completion" : "Iteration " + it.number) + " · " + facts.join(" · ")));
    if (r !== null) {
      // The cells below repeat the reply's code, highlighted: the reply itself starts folded (not a leaf's).
      const fold = el("details", "reply");
      fold.open = leaf || !it.cells.length;
      fold.appendChild(el("summary", "label", "model reply (" + plural(r.text.chars, "char") + ")"));
      block(fold, null, r.text, "reply");
      sec.appendChild(fold);
    }
    for (const c of it.cells) sec.appendChild(renderCell(c));
    return sec;
  }

  function renderDetail(id) {
    const host = document.getElementById("detail");
    host.replaceChildren();
    const n = byId.get(id);
    const t = (data.transcripts || {})[id];
    const v = t ? t.node : null;
    const tot = t ? t.totals : null;
    host.appendChild(el("h2", "nid", id));
    host.appendChild(kv([
      ["kind", n.kind + (n.depth ? " (depth " + n.depth + ")" : "")],
      ["status", el("span", "status " + st(n.status), n.status)],
      ["ended", v ? v.ended_because : null],
      ["parent", n.parent === null ? null : nodeLink(n.parent)],
      ["model", v ? v.model : null],
      ["cost", usd(n.cost) + (tot && tot.subcalls ? " (its sub-calls: " + usd(tot.children_cost) + ")" : "")],
      ["tokens", v ? count(v.prompt_tokens) + " in / " + count(v.completion_tokens) + " out" : null],
      ["duration", duration(n.duration_ms) + (n.status === "running" ? " so far" : "")],
      ["work", tot && n.kind !== "leaf" ? [plural(tot.iterations, "iteration"), plural(tot.cells, "cell"),
        plural(tot.subcalls, "sub-call")].join(" · ") : null],
      ["context", t && t.context ? t.context.kind + " of " + plural(t.context.chars, "char") +
        (t.context.documents.length > 1 ? " in " + plural(t.context.documents.length, "document") : "") : null],
      ["error", v ? v.error : n.error],
    ]));
    if (!t) {
      host.appendChild(el("p", "empty", "No transcript is recorded for this node."));
      return;
    }
    if (t.query !== null) {
      host.appendChild(el("h3", null, n.kind === "leaf" ? "Prompt" : "Query"));
      block(host, null, t.query, "query");
    }
    for (const it of t.iterations) host.appendChild(renderIteration(it, n.kind === "leaf"));
    host.appendChild(el("h3", null, "Answer"));
    if (t.answer !== null) block(host, null, t.answer, "answer");
    else host.appendChild(el("p", "empty", v.ended_because ? "no answer" : "no answer yet"));
  }

  function select(id, push) {
    if (!byId.has(id)) return;
    reveal(id);
    setExpanded(id, true);
    if (selected !== null && rows.has(selected)) rows.get(selected).row.classList.remove("selected");
    selected = id;
    const entry = rows.get(id);
    entry.row.classList.add("selected");
    entry.row.scrollIntoView({ block: "nearest" });
    renderDetail(id);
    document.getElementById("detail").scrollTop = 0;
    if (push) history.replaceState(null, "", "#node=" + encodeURIComponent(id));
  }

  function fromHash() {
    const m = /^#node=(.+)$/.exec(location.hash);
    if (m) select(decodeURIComponent(m[1]), false);
  }

  renderSummary();
  renderTree();
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
