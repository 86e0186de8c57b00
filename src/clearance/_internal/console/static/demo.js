// The runtime demo page: each button POSTs one step to the live gate and shows its calls.
"use strict";
(function () {
  const C = window.Clearance;
  const root = document.getElementById("demo");
  if (!root) return;
  const status = document.getElementById("demo-status");
  const buttons = Array.from(root.querySelectorAll("button"));
  const LABELS = { allow: "allowed", deny: "denied", approval_required: "approval required",
    rejected: "refused", failed: "failed", other: "skipped" };

  function busy(on) {
    for (const button of buttons) button.disabled = on;
  }

  function showTrace(traceId, url) {
    const link = document.getElementById("trace-link");
    link.href = url;
    link.textContent = traceId;
    link.hidden = false;
    const none = document.getElementById("trace-none");
    if (none) none.remove();
  }

  function callView(call) {
    const parts = [C.el("span", { class: "badge " + call.effect, text: LABELS[call.effect] || call.effect }), " ",
      C.el("span", { class: "what" }, call.action), " ", C.el("code", { text: call.args })];
    const node = C.el("div", { class: "call " + call.effect }, C.el("div", {}, ...parts));
    if (call.detail) node.append(C.el("div", { class: "muted", text: call.detail }));
    if (call.reasons.length) {
      node.append(C.el("ul", {}, ...call.reasons.map(function (r) {
        return C.el("li", {}, C.el("code", { text: r.rule }), r.message ? ": " + r.message : "");
      })));
    }
    const links = C.el("div", { class: "links" });
    if (call.request_url) links.append(C.el("a", { href: call.request_url }, "request " + call.request_id));
    else if (call.request_id) links.append(C.el("span", { class: "muted" }, "request " + call.request_id + " (no decision)"));
    if (call.index !== null) links.append(C.el("span", { class: "muted" }, "ledger #" + call.index));
    node.append(links);
    return node;
  }

  function showResult(result) {
    const item = document.getElementById("step-" + result.step);
    const box = item.querySelector(".result");
    const calls = result.calls.map(callView);
    const last = result.calls[result.calls.length - 1];
    box.dataset.effect = last ? last.effect : "";
    box.replaceChildren(...calls, C.el("div", { class: "links" },
      C.el("a", { href: result.trace_url }, "lineage of trace " + result.trace_id)));
    showTrace(result.trace_id, result.trace_url);
  }

  async function runStep(number) {
    status.textContent = "Running step " + number + "…";
    const result = await C.postJSON("/console/api/demo/steps/" + number);
    showResult(result);
    status.textContent = "Step " + number + " done.";
  }

  async function guarded(work) {
    busy(true);
    try {
      await work();
    } catch (error) {
      status.textContent = "Failed: " + error.message;
    } finally {
      busy(false);
    }
  }

  for (const button of root.querySelectorAll("button.run-step")) {
    button.addEventListener("click", function () {
      guarded(function () { return runStep(Number(button.dataset.step)); });
    });
  }

  async function newTrace() {
    const opened = await C.postJSON("/console/api/demo/trace");
    for (const box of root.querySelectorAll(".result")) {
      box.replaceChildren();
      delete box.dataset.effect;
    }
    showTrace(opened.trace_id, opened.trace_url);
    status.textContent = "New trace " + opened.trace_id + " opened.";
  }

  document.getElementById("new-trace").addEventListener("click", function () { guarded(newTrace); });
  document.getElementById("run-all").addEventListener("click", function () {
    guarded(async function () {
      await newTrace();
      const steps = root.querySelectorAll("button.run-step");
      for (const button of steps) {
        await runStep(Number(button.dataset.step));
        await new Promise(function (done) { setTimeout(done, 300); });
      }
      status.textContent = "All " + steps.length + " steps ran.";
    });
  });
})();
