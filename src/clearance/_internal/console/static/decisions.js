// clearance console: the live decisions feed and the request page's replay button.
// Hand-written, no dependencies; uses window.Clearance from console.js.
"use strict";
(function () {
  const C = window.Clearance;
  const MAX_ROWS = 500; // rows kept on the live page; older ones stay reachable by "Older"
  const EFFECTS = ["allow", "deny", "approval_required"];

  function badge(effect) {
    const kind = EFFECTS.indexOf(effect) >= 0 ? effect : "other";
    return C.el("span", { class: "badge " + kind }, String(effect).replace(/_/g, " "));
  }

  function cell(label) {
    const td = C.el("td", { "data-label": label });
    for (let i = 1; i < arguments.length; i++) {
      if (arguments[i] !== null && arguments[i] !== undefined) td.append(arguments[i]);
    }
    return td;
  }

  function code(text, kind) {
    return C.el("code", kind ? { class: kind } : null, text);
  }

  // One row, exactly as decisions.html renders it.
  function rowElement(row) {
    const at = String(row.at);
    const rules = C.el("td", { "data-label": "Rules" });
    row.rules.forEach(function (rule, i) {
      if (i > 0) rules.append(" ");
      rules.append(C.el("code", { class: "rule" }, rule));
    });
    const trace = row.trace_id
      ? C.el("a", { href: "/console/lineage/" + encodeURIComponent(row.trace_id) }, code(row.trace_id, "id"))
      : null;
    return C.el(
      "tr",
      { "data-index": row.index, "data-effect": row.effect, class: "fresh" },
      cell("Time", C.el("time", { datetime: at, title: at }, C.el("span", { class: "day" }, at.slice(0, 10)), " " + at.slice(11, 19))),
      C.el("td", { "data-label": "Principal", class: "by" }, row.principal),
      cell("Action", code(row.action)),
      cell("Resource", row.resource || ""),
      cell("Effect", badge(row.effect)),
      rules,
      cell("Trace", trace),
      cell("Request", C.el("a", { href: "/console/requests/" + encodeURIComponent(row.request_id) }, code(row.request_id, "id")))
    );
  }

  function live(table) {
    const body = table.tBodies[0];
    const status = document.getElementById("feed-status");
    const empty = document.getElementById("feed-empty");
    const query = table.dataset.query || "";
    let cursor = table.dataset.after;

    // Keeps the page bounded; the "Older" link then continues below the last row kept.
    function trim() {
      while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
      const last = body.rows[body.rows.length - 1];
      if (!last) return;
      let older = document.getElementById("older-link");
      if (!older) {
        older = C.el("a", { id: "older-link", rel: "next" }, "Older \u2192");
        document.querySelector("nav.pager").append(older);
      }
      older.setAttribute("href", "/console/decisions?" + (query ? query + "&" : "") + "before=" + last.dataset.index);
    }

    C.poll(async function () {
      const url = "/console/api/decisions?after=" + encodeURIComponent(cursor) + (query ? "&" + query : "");
      const data = await C.getJSON(url);
      cursor = String(data.cursor);
      if (!data.rows.length) return;
      const fresh = document.createDocumentFragment();
      data.rows.forEach(function (row) { fresh.append(rowElement(row)); });
      body.prepend(fresh);
      if (empty) empty.hidden = true;
      if (body.rows.length > MAX_ROWS) trim();
      const count = data.rows.length;
      status.textContent = count + (count === 1 ? " new decision" : " new decisions") +
        " at " + new Date().toISOString().slice(11, 19) + " UTC" +
        (data.gap ? "; more arrived than shown here: reload to page through them all." : ".");
    }, 2000);
  }

  function dd(term, value) {
    return [C.el("dt", null, term), C.el("dd", null, value)];
  }

  function summary(s) {
    if (!s) return "(not replayed)";
    const rules = (s.rules || []).join(", ") || "no rule matched";
    return String(s.effect).replace(/_/g, " ") + " [" + rules + "]";
  }

  function replay(button) {
    const out = document.getElementById("replay-result");
    button.addEventListener("click", async function () {
      button.disabled = true;
      out.replaceChildren(C.el("p", { class: "muted" }, "Replaying\u2026"));
      try {
        const result = await C.postJSON(button.dataset.url);
        const facts = C.el("dl", { class: "facts" });
        [
          dd("Result", C.el("span", { class: "badge " + result.status, id: "replay-status" }, result.status)),
          dd("Logged", summary(result.logged)),
          dd("Replayed", summary(result.replayed)),
          result.detail ? dd("Detail", result.detail) : [],
        ].forEach(function (pair) { facts.append.apply(facts, pair); });
        out.replaceChildren(facts);
      } catch (error) {
        out.replaceChildren(C.el("p", { class: "alert", role: "alert" }, "Replay failed: " + error.message));
      } finally {
        button.disabled = false;
      }
    });
  }

  const table = document.getElementById("feed");
  if (table && table.dataset.live === "1") live(table);
  const button = document.getElementById("replay-button");
  if (button) replay(button);
})();
