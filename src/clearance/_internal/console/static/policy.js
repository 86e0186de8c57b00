// Policy lab: dry runs, impact analysis, validation and activation of a candidate bundle.
// Every answer comes from /console/api/policy/*; this script only collects input and draws.
"use strict";
(function () {
  const C = window.Clearance;
  const el = C.el;
  const workbench = document.getElementById("workbench");
  if (!workbench) return;
  const activeDigest = workbench.dataset.activeDigest;
  const candidates = Array.from(document.querySelectorAll("textarea.candidate-file"));
  const EFFECT_LABEL = { allow: "allow", deny: "deny", approval_required: "approval required" };

  function candidateFiles() {
    const files = {};
    for (const area of candidates) files[area.dataset.file] = area.value;
    return files;
  }

  function markEdited() {
    for (const area of candidates) {
      const mark = document.querySelector('[data-edited-for="' + area.id + '"]');
      if (mark) mark.hidden = area.value === area.defaultValue;
    }
  }

  function badge(effect, id) {
    return el("span", { class: "badge " + effect, id: id }, EFFECT_LABEL[effect] || effect);
  }

  function ruleIds(rules) {
    if (!rules.length) return el("span", { class: "muted" }, "no rule");
    return el("span", { class: "rule-ids" }, ...rules.map((r) => el("span", { class: "rule-id" }, r)));
  }

  function showError(box, error) {
    const field = error.data && error.data.error && error.data.error.field;
    box.replaceChildren(
      el("p", { class: "alert", role: "alert" }, error.message + (field ? " (" + field + ")" : ""))
    );
  }

  // Runs `work` with `button` disabled and the box marked busy; errors land in the box.
  async function busy(button, box, work) {
    button.disabled = true;
    box.setAttribute("aria-busy", "true");
    try {
      await work();
    } catch (error) {
      showError(box, error);
    } finally {
      button.disabled = false;
      box.removeAttribute("aria-busy");
    }
  }

  function table(headings, rows, attrs) {
    return el("div", { class: "table-wrap" },
      el("table", attrs || {},
        el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, ...rows)));
  }

  // --- dry run ---------------------------------------------------------------------------

  function drawDryRun(box, data) {
    const reasons = data.reasons.map((r) =>
      el("tr", {}, el("td", {}, el("span", { class: "rule-id" }, r.rule)), el("td", {}, r.message || "")));
    box.replaceChildren(
      el("p", { class: "effect" }, "Effect: ", badge(data.effect, "dry-effect"),
        " under ", data.candidate ? "the candidate bundle" : "the active bundle", " (nothing was logged)"),
      el("h3", {}, "Matching rules"),
      reasons.length
        ? table(["Rule", "Message"], reasons, { id: "dry-rules" })
        : el("p", { class: "muted" }, "No rule matched."),
      el("h3", {}, "Trace facts"),
      el("pre", { id: "dry-facts" }, JSON.stringify(data.facts, null, 2)),
      el("dl", { class: "facts" },
        el("dt", {}, "Policy digest"), el("dd", {}, el("code", {}, data.policy_digest)),
        el("dt", {}, "Intent digest"), el("dd", {}, el("code", {}, data.intent_digest)))
    );
  }

  const dryForm = document.getElementById("dry-run");
  const dryBox = document.getElementById("dry-result");
  dryForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const against = dryForm.querySelector('input[name="against"]:checked').value;
    const trace = document.getElementById("trace-id").value.trim();
    const body = {
      intent: document.getElementById("intent").value,
      trace_id: trace || null,
      files: against === "candidate" ? candidateFiles() : null,
    };
    busy(document.getElementById("evaluate"), dryBox, async function () {
      drawDryRun(dryBox, await C.postJSON("/console/api/policy/evaluate", body));
    });
  });

  // --- impact analysis -------------------------------------------------------------------

  function transitionText(text) {
    return text.replace("->", " → ").replace(/_/g, " ");
  }

  function outcomeCell(outcome, id) {
    return el("td", {}, badge(outcome.effect, id), " ", ruleIds(outcome.rules));
  }

  function countTable(title, what, counts, id, label) {
    const rows = Object.entries(counts).map(([key, n]) =>
      el("tr", {}, el("td", {}, label ? label(key) : key), el("td", { class: "num" }, String(n))));
    return el("div", {},
      el("h3", {}, title),
      rows.length ? table([what, "Changes"], rows, { id: id }) : el("p", { class: "muted" }, "None."));
  }

  function requestLink(id) {
    return el("a", { href: "/console/requests/" + encodeURIComponent(id), class: "mono" }, id);
  }

  function drawImpact(summary, details, data) {
    const counts = data.counts;
    const card = (label, value, id) =>
      el("div", { class: "card" }, el("div", { class: "value", id: id }, String(value)), el("div", { class: "label" }, label));
    const span = data.first_index === null
      ? "The log holds no decision yet."
      : "Log entries " + data.first_index + " to " + data.last_index + " (the newest " + counts.examined +
        " decisions of a log of " + data.ledger_size + " entries).";
    summary.replaceChildren(
      el("div", { class: "cards" },
        card("examined", counts.examined, "impact-examined"),
        card("unchanged", counts.unchanged, "impact-unchanged"),
        card("would change", counts.changed, "impact-changed"),
        card("unverifiable", counts.unverifiable, "impact-unverifiable")),
      el("p", { class: "muted" }, span),
      el("p", {}, "Candidate ", el("code", {}, data.candidate_digest),
        data.candidate_digest === data.active_digest ? " (the active bundle itself)" : "")
    );
    const changes = data.changes.map((c) =>
      el("tr", {},
        el("td", {}, requestLink(c.request_id)),
        el("td", { class: "num" }, String(c.index)),
        el("td", {}, el("time", { datetime: c.at }, c.at.slice(0, 19).replace("T", " "))),
        el("td", {}, c.principal),
        el("td", {}, el("span", { class: "mono" }, c.action)),
        el("td", {}, transitionText(c.transition), c.kind === "rules" ? el("span", { class: "kind-note" }, " (other rules)") : null),
        outcomeCell(c.logged),
        outcomeCell(c.candidate)));
    const unverifiable = data.unverifiable.map((u) =>
      el("tr", {},
        el("td", {}, requestLink(u.request_id)),
        el("td", { class: "num" }, String(u.index)),
        el("td", {}, el("span", { class: "mono" }, u.action)),
        outcomeCell(u.logged),
        el("td", {}, u.reason)));
    const parts = [
      el("h3", { id: "changes-heading" }, "Decisions that would change (" + counts.changed + ")"),
      changes.length
        ? table(["Request", "Log index", "When (UTC)", "Principal", "Action", "Change", "Logged", "Candidate"], changes, { id: "impact-changes" })
        : el("p", { class: "ok", id: "impact-none" }, "No examined decision would change."),
      el("div", { class: "counts" },
        countTable("By change", "Change", data.by_transition, "by-transition", transitionText),
        countTable("By action", "Action", data.by_action, "by-action"),
        countTable("By candidate rule", "Rule", data.by_candidate_rule, "by-candidate-rule"),
        countTable("By logged rule", "Rule", data.by_logged_rule, "by-logged-rule")),
    ];
    if (unverifiable.length) {
      parts.push(el("h3", {}, "Unverifiable (" + counts.unverifiable + ")"),
        el("p", { class: "muted" }, "The candidate cannot be evaluated faithfully on these; they are not counted as unchanged."),
        table(["Request", "Log index", "Action", "Logged", "Why"], unverifiable, { id: "impact-unverifiable-list" }));
    }
    if (data.diff.length) {
      parts.push(el("details", { class: "file" },
        el("summary", {}, "What the candidate changes in the bundle (canonical form)"),
        el("pre", { class: "diff" }, ...data.diff.map((line) => el("span", { class: line.kind }, line.text)))));
    }
    details.replaceChildren(el("h2", {}, "Impact of the candidate"), ...parts);
  }

  const impactForm = document.getElementById("impact-form");
  const impactSummary = document.getElementById("impact-summary");
  const impactDetails = document.getElementById("impact-details");
  impactForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const raw = document.getElementById("impact-last").value;
    const n = Number(raw);
    const body = { files: candidateFiles(), last: Number.isInteger(n) && raw !== "" ? n : raw };
    impactDetails.replaceChildren();
    busy(document.getElementById("run-impact"), impactSummary, async function () {
      drawImpact(impactSummary, impactDetails, await C.postJSON("/console/api/policy/impact", body));
    });
  });

  // --- the candidate editor --------------------------------------------------------------

  for (const area of candidates) area.addEventListener("input", markEdited);
  document.getElementById("reset-candidate").addEventListener("click", function () {
    for (const area of candidates) area.value = area.defaultValue;
    markEdited();
  });

  // --- validate and activate (admins only: the buttons exist only for them) --------------

  const adminBox = document.getElementById("admin-result");
  const validateButton = document.getElementById("validate");
  const activateButton = document.getElementById("activate");
  if (!adminBox || !validateButton || !activateButton) return;
  const confirmBox = document.getElementById("confirm-activation");
  const confirmButton = document.getElementById("confirm-activate");

  function closeConfirm() {
    confirmBox.hidden = true;
    activateButton.setAttribute("aria-expanded", "false");
  }

  validateButton.addEventListener("click", function () {
    closeConfirm();
    busy(validateButton, adminBox, async function () {
      const data = await C.postJSON("/console/api/policy/validate", { files: candidateFiles() });
      const same = data.digest === data.active_digest ? " It is the active bundle." : "";
      const parts = [el("p", { class: "ok", role: "status", id: "validate-ok" },
        "The candidate loads: " + data.rules + " rules, " + data.tools + " tools, digest ", el("code", {}, data.digest), "." + same)];
      if (data.warnings.length) {
        parts.push(el("p", { class: "notice" }, "Lint warnings (the bundle is valid; read them before activating):"),
          el("ul", { id: "lint-warnings" }, ...data.warnings.map((w) => el("li", { class: "mono" }, w))));
      }
      adminBox.replaceChildren(...parts);
    });
  });

  activateButton.addEventListener("click", function () {
    confirmBox.hidden = false;
    activateButton.setAttribute("aria-expanded", "true");
    confirmButton.focus();
  });
  document.getElementById("cancel-activate").addEventListener("click", function () {
    closeConfirm();
    activateButton.focus();
  });
  confirmButton.addEventListener("click", function () {
    const body = { files: candidateFiles(), based_on: activeDigest };
    busy(confirmButton, adminBox, async function () {
      let data;
      try {
        data = await C.postJSON("/console/api/policy/activate", body);
      } finally {
        closeConfirm();
      }
      if (data.changed) {
        window.location.assign("/console/policy?activated=" + encodeURIComponent(data.ledger_index));
      } else {
        adminBox.replaceChildren(el("p", { class: "ok", role: "status" },
          "The candidate is the active bundle already (policy entry " + data.ledger_index + "); nothing changed."));
      }
    });
  });
})();
