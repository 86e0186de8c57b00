// The health dashboard: polls /console/api/health and updates the numbers in place.
"use strict";
(function () {
  const C = window.Clearance;
  const root = document.getElementById("health");
  if (!root) return;
  const errorBox = document.getElementById("health-error");

  // Formats as pages/health.py's show() does (keep the two in step).
  function show(value, kind) {
    if (value === null || value === undefined) return "–";
    if (kind === "rate") return value.toFixed(2) + "/s";
    if (kind === "percent") return Math.round(value * 100) + "%";
    if (kind === "ms") return value.toFixed(1) + " ms";
    if (kind === "age") {
      const seconds = Math.floor(value);
      if (seconds < 120) return seconds + " s ago";
      if (seconds < 7200) return Math.floor(seconds / 60) + " min ago";
      return Math.floor(seconds / 3600) + " h ago";
    }
    return String(value);
  }

  function field(data, path) {
    let value = data;
    for (const part of path.split(".")) {
      if (value === null || value === undefined) return null;
      value = Array.isArray(value) ? value[Number(part)] : value[part];
    }
    return value === undefined ? null : value;
  }

  function badge(node, good, goodText, badText) {
    node.className = "badge " + (good ? "pass" : "fail");
    node.textContent = good ? goodText : badText;
  }

  function update(data) {
    for (const node of root.querySelectorAll("[data-field]")) {
      node.textContent = show(field(data, node.dataset.field), node.dataset.kind || "int");
    }
    badge(document.getElementById("checkpoint-verifies"), data.checkpoint.verifies, "verifies", "does not verify");
    document.getElementById("checkpoint-problem").textContent = data.checkpoint.problem || "";
    badge(document.getElementById("store-ready"), data.store.ready, "ready", "not ready");
    const checks = document.getElementById("store-checks");
    checks.replaceChildren(...Object.entries(data.store.checks).map(function ([name, status]) {
      return C.el("li", { class: status === "ok" ? "pass" : "fail" }, C.el("strong", { text: name }), ": " + status);
    }));
    const keys = document.getElementById("grant-keys");
    keys.replaceChildren(...data.keys.grant.map(function (key) {
      return C.el("li", {}, C.el("code", { text: key.kid }), " ",
        C.el("span", { class: "badge " + (key.active ? "pass" : "other"), text: key.active ? "signs grants" : "retired" }));
    }));
    const problem = document.getElementById("grant-keys-problem");
    problem.textContent = data.keys.grant_problem || "";
    problem.hidden = !data.keys.grant_problem;
    document.getElementById("log-key-id").textContent = data.keys.log.key_id;
    document.getElementById("log-key-name").textContent = data.keys.log.name;
    const updated = document.getElementById("health-updated");
    updated.dataset.at = String(data.at);
    updated.textContent = C.isoTime(data.at);
  }

  const updated = document.getElementById("health-updated");
  updated.textContent = C.isoTime(Number(updated.dataset.at));

  C.poll(async function () {
    try {
      update(await C.getJSON("/console/api/health"));
      errorBox.hidden = true;
    } catch (error) {
      errorBox.textContent = "Could not refresh: " + error.message;
      errorBox.hidden = false;
    }
  }, Number(root.dataset.refreshMs) || 3000);
})();
