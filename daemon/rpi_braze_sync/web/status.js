// The status page: renders the document embedded in the page, then /status.json every few
// seconds. Every value is set as text (textContent), never as markup: file names come from
// the share. The token, when the page was opened with ?token=, goes as a bearer header.
"use strict";
(() => {
  const REFRESH_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  let page = Math.max(1, Number.parseInt(params.get("page") || "1", 10) || 1);
  const shown = {}; // section -> the JSON it was last drawn from: unchanged, left alone

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const count = (n) => (n === null || n === undefined ? "–" : n.toLocaleString("en-US"));
  // A few rows a minute are a rate below 1: say so rather than "0 rows/s".
  const rate = (v) => (v >= 10 ? count(Math.round(v)) : v >= 0.1 || v <= 0 ? v.toFixed(1) : "< 0.1");
  const plural = (word) => (n) => `${count(n)} ${n === 1 ? word : `${word}s`}`;
  const rows = plural("row"), files = plural("file");
  function duration(s) {
    if (s === null || s === undefined) return "–";
    const whole = Math.max(0, Math.round(s));
    if (whole < 60) return `${s < 10 ? s.toFixed(1) : whole} s`;
    const m = Math.floor(whole / 60);
    if (m < 60) return `${m} min ${String(whole % 60).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }
  function where(file) {
    const parts = [["channel", file.channel], ["offer", file.offer], ["workflow", file.workflow_id]];
    return parts.filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`).join(" · ");
  }
  function changed(section, value) {
    const text = JSON.stringify(value);
    if (shown[section] === text) return false;
    shown[section] = text;
    return true;
  }
  // A state in words, with a mark and a colour that only repeat it.
  function badge(check) {
    const cls = check.ok === true ? "ok" : check.ok === false ? "bad" : "off";
    const mark = check.ok === true ? "✓ " : check.ok === false ? "✗ " : "– ";
    return el("span", `badge ${cls}`, mark + check.text);
  }

  const CHECKS = [
    ["braze_reachable", "Braze reachable"],
    ["key_accepted", "API key accepted"],
    ["share_available", "Export share available"],
    ["config_reloaded", "Configuration reloaded"],
  ];

  function renderDaemon(d) {
    $("version").textContent = d.version;
    const ready = { ok: d.ready, text: d.ready ? "ready" : "not ready" };
    const why = d.ready ? "watching the share and sending what arrives" : d.problems.join("; ");
    // A live region: changed only when its words change, so a screen reader says it once.
    if (changed("summary", [d.ready, why])) $("summary").replaceChildren(badge(ready), why);
    $("role-row").hidden = d.role === null;
    $("role").textContent = d.role || "";
    if (!changed("checks", d)) return;
    const list = $("checks");
    for (const node of [...list.querySelectorAll("div[data-check]")]) node.remove();
    for (const [key, label] of CHECKS) {
      const row = el("div");
      row.dataset.check = key;
      const dd = el("dd");
      dd.append(badge(d[key]), el("span", "detail", d[key].detail));
      row.append(el("dt", "", label), dd);
      list.append(row);
    }
    $("problems").replaceChildren(...d.problems.map((p) => el("li", "", p)));
  }

  function renderSending(s) {
    $("sending-none").hidden = s !== null;
    $("sending-file").hidden = s === null;
    if (s === null) return;
    $("sending-path").textContent = s.path;
    $("sending-where").textContent = where(s);
    const bar = $("progress");
    if (s.rows_total === null) {
      bar.removeAttribute("value"); // indeterminate: the rows are not counted yet
    } else {
      bar.max = Math.max(1, s.rows_total);
      bar.value = s.rows_settled;
    }
    $("progress-label").textContent = s.rows_total === null
      ? "Rows acknowledged (total not counted yet)"
      : `Rows acknowledged: ${count(s.rows_settled)} of ${count(s.rows_total)}`;
    const points = s.data_points_sent === null ? ""
      : `; delta: ${count(s.data_points_sent)} data points sent, ${count(s.data_points_skipped)} skipped as unchanged`;
    $("progress-text").textContent = s.text + points;
  }

  function commandLine(text) {
    const box = el("div", "command");
    const code = el("code", "", text);
    const copy = el("button", "", "Copy");
    copy.type = "button";
    copy.setAttribute("aria-label", "Copy the retry command");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(text);
        copy.textContent = "Copied";
      } catch {
        getSelection().selectAllChildren(code); // no clipboard here (plain http): selected
        copy.textContent = "Selected: copy it";
      }
      setTimeout(() => { copy.textContent = "Copy"; }, 2000);
    });
    box.append(code, copy);
    return box;
  }

  function renderAttention(a) {
    if (!changed("attention", a)) return;
    $("attention-none").hidden = a.total > 0;
    $("attention").replaceChildren(...a.files.map((f) => {
      const item = el("li");
      item.dataset.file = f.path;
      const head = el("p", "file-name");
      head.append(el("span", "badge bad", f.problem === "failed" ? "✗ failed" : "⚠ partly rejected"), " ", f.path);
      item.append(head, el("p", "where", where(f)), el("p", "reason", `Reason: ${f.reason}`));
      item.append(el("p", "", `${rows(f.rows_sent)} sent, ${count(f.rows_rejected)} rejected. Send it again:`));
      item.append(commandLine(f.retry_command));
      if (f.rejects_path) {
        const p = el("p", "", "Rejected rows and why: ");
        p.append(el("code", "rejects", f.rejects_path));
        item.append(p);
      }
      return item;
    }));
    $("attention-more").hidden = a.total <= a.files.length;
    $("attention-more").textContent = `and ${count(a.total - a.files.length)} more: rpi-braze-sync status --state failed`;
  }

  function renderWaiting(w) {
    if (!changed("waiting", w)) return;
    $("waiting-none").hidden = w.total > 0;
    $("waiting").replaceChildren(...w.files.map((f) => {
      const item = el("li");
      item.append(el("span", "file-name", f.path), el("span", "detail", `${f.mode} · ${where(f)}`));
      item.append(el("span", "detail", f.reason ? `Waits: ${f.reason}` : "Waits for its turn"));
      return item;
    }));
    $("waiting-more").hidden = w.total <= w.files.length;
    $("waiting-more").textContent = `and ${count(w.total - w.files.length)} more`;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function renderChart(h) {
    if (!changed("chart", h)) return;
    const values = h.points.map((p) => p.rows_per_s);
    const known = values.filter((v) => v !== null);
    const peak = Math.max(1, ...known);
    const W = 600, H = 100, step = W / values.length;
    const nodes = [svg("line", { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5 })];
    $("chart-peak").textContent = `${rate(peak)} rows/s`;
    values.forEach((v, i) => {
      if (v === null || v <= 0) return;
      const height = Math.max(2, ((H - 4) * v) / peak); // a single row stays visible
      const bar = svg("rect", { class: "bar", x: i * step + 0.5, width: step - 1, y: H - height, height });
      bar.append(svg("title", {}, `${h.points[i].at}: ${rows(h.points[i].rows)}, ${rate(v)} rows/s`));
      nodes.push(bar);
    });
    $("chart").replaceChildren(...nodes);
    const total = h.points.reduce((sum, p) => sum + (p.rows || 0), 0);
    const now = values[values.length - 1];
    $("chart-caption").textContent = known.length
      ? `Rows settled per second, per minute. Last minute: ${rate(now || 0)} rows/s; peak ${rate(Math.max(0, ...known))} rows/s; ${rows(total)} in the hour shown.`
      : "Rows settled per second, per minute: no figures yet (the daemon has just started).";
  }

  function renderRecent(r) {
    page = r.page;
    $("page-of").textContent = `Page ${r.page} of ${r.pages} (${files(r.total)})`;
    $("newer").disabled = r.page <= 1;
    $("older").disabled = r.page >= r.pages;
    $("recent-caption").textContent = `Files seen or finished since ${r.since.slice(0, 16).replace("T", " ")} UTC, newest first`;
    if (!changed("recent", r)) return;
    $("recent").replaceChildren(...r.files.map((f) => {
      const row = el("tr");
      row.dataset.state = f.state;
      const state = el("td");
      const cls = f.state === "failed" || f.state === "vanished" ? "bad" : f.state === "done" ? "ok" : "off";
      state.append(el("span", `badge ${cls}`, f.state));
      const file = el("td", "file", f.path.split("/").pop());
      file.title = f.path;
      if (f.reason) file.append(el("span", "detail", f.reason));
      row.append(file, el("td", "", f.channel ?? "–"), el("td", "", f.offer ?? "–"),
        el("td", "", f.workflow_id ?? "–"), state, el("td", "num", count(f.rows_sent)),
        el("td", "num", count(f.rows_rejected)), el("td", "num", count(f.fields_dropped)),
        el("td", "num", count(f.data_points_sent)), el("td", "num", count(f.data_points_skipped)),
        el("td", "num", duration(f.duration_s)));
      return row;
    }));
  }

  function render(doc) {
    renderDaemon(doc.daemon);
    renderSending(doc.sending);
    renderAttention(doc.attention);
    renderWaiting(doc.waiting);
    renderChart(doc.rows_per_s);
    renderRecent(doc.recent);
    const at = $("updated");
    at.dateTime = doc.generated_at;
    at.textContent = `${doc.generated_at.slice(11, 19)} UTC`;
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      const answer = await fetch(`status.json?page=${page}`, { headers, cache: "no-store" });
      if (!answer.ok) throw new Error(`the daemon answered ${answer.status}`);
      render(await answer.json());
      $("stale").hidden = true;
    } catch (error) {
      $("stale").hidden = false;
      $("stale").textContent = `· not updated: ${error.message}; trying again`;
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }
  function turn(delta) {
    page = Math.max(1, page + delta);
    refresh();
  }
  $("newer").addEventListener("click", () => turn(-1));
  $("older").addEventListener("click", () => turn(1));

  if (token) { // the links to the JSON need the token too
    for (const link of document.querySelectorAll('a[href="status.json"]')) {
      link.href = `status.json?token=${encodeURIComponent(token)}`;
    }
  }
  render(JSON.parse($("initial").textContent));
  timer = setTimeout(refresh, REFRESH_MS);
})();
