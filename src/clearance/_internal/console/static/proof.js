// clearance proof viewer: the page. Reads the receipt and the vkey the user pastes or
// uploads, runs ClearanceVerify in this browser and shows every step. It makes no
// request while verifying; only the consistency button reads the log, and only its
// public /v1/log endpoints. It needs nothing from console.js, so a saved copy of the
// page works from disk.
"use strict";
(function () {
  const V = window.ClearanceVerify;
  const F = window.ClearanceFormats;
  const C = window.ClearanceCrypto;
  const $ = function (id) { return document.getElementById(id); };

  const form = $("proof-form");
  const receiptBox = $("receipt");
  const vkeyBox = $("vkey");
  const originBox = $("origin");
  const supportNote = $("support");
  const resultSection = $("result");
  const verdict = $("verdict");
  const stepsList = $("steps");
  const logUrl = $("log-url");
  const consistencyButton = $("check-consistency");
  const consistencyNote = $("consistency-note");
  const consistencyVerdict = $("consistency-verdict");
  const consistencySteps = $("consistency-steps");

  let support = null;
  let uploaded = null; // the exact text of an uploaded receipt, until the box is edited
  let verified = null; // the result of the last receipt that verified

  const STATUS_TEXT = { pass: "passed", fail: "failed", notreached: "not reached", unsupported: "cannot check" };

  function el(tag, attrs) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (let i = 2; i < arguments.length; i++) {
      const child = arguments[i];
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function readFile(input) {
    return new Promise(function (resolve, reject) {
      const file = input.files && input.files[0];
      if (!file) {
        resolve(null);
        return;
      }
      file.arrayBuffer().then(function (buffer) {
        try {
          // fatal: no silent replacement characters; ignoreBOM: keep a BOM, as Python does.
          resolve(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(buffer));
        } catch (error) {
          reject(new Error(file.name + " is not UTF-8 text"));
        }
      }, reject);
    });
  }

  function showSupport() {
    supportNote.replaceChildren();
    if (support.ok) {
      supportNote.className = "muted";
      supportNote.textContent = "This browser checks Ed25519 signatures and SHA-256 hashes itself (WebCrypto). Nothing you paste here is sent anywhere.";
    } else {
      supportNote.className = "alert";
      supportNote.textContent = support.reason + " The proof viewer will not claim a result in this browser.";
    }
  }

  function renderFacts(row) {
    if (!row.facts.length) return null;
    const list = el("dl", { class: "facts" });
    for (const item of row.facts) {
      list.append(el("dt", null, item.label), el("dd", { class: item.mono ? "mono" : null }, item.value));
    }
    return list;
  }

  function renderPath(row) {
    if (!row.path || !row.path.length) return null;
    const sided = row.path.some(function (s) { return s.side !== null; });
    const head = el("tr", null, el("th", { scope: "col" }, "#"));
    if (sided) head.append(el("th", { scope: "col" }, "sibling"));
    head.append(el("th", { scope: "col" }, "sibling hash"));
    if (sided) head.append(el("th", { scope: "col" }, "hash after this step"));
    const body = el("tbody");
    row.path.forEach(function (step, index) {
      const line = el("tr", { "data-path-step": index + 1 }, el("td", null, index + 1));
      if (sided) {
        line.append(el("td", null, step.side === "left" ? "left: SHA-256(0x01 || sibling || hash)" : "right: SHA-256(0x01 || hash || sibling)"));
      }
      line.append(el("td", { class: "mono hash" }, F.b64encode(step.sibling)));
      if (sided) line.append(el("td", { class: "mono hash" }, F.b64encode(step.result)));
      body.append(line);
    });
    return el("div", { class: "table-wrap" }, el("table", { class: "path" }, el("thead", null, head), body));
  }

  function renderRows(list, report) {
    list.replaceChildren();
    for (const row of report.rows) {
      const item = el("li", { class: row.status, "data-row": row.id, "data-step": row.step, "data-status": row.status },
        el("span", { class: "badge " + (row.status === "pass" ? "pass" : row.status === "fail" ? "fail" : "other") }, STATUS_TEXT[row.status]),
        " ", el("strong", null, row.title),
        row.summary ? el("p", { class: "summary" }, row.summary) : null,
        renderFacts(row), renderPath(row));
      if (row.text !== null && row.text !== undefined) {
        item.append(el("details", null, el("summary", null, "the canonical bytes (UTF-8)"), el("pre", { class: "canonical" }, row.text)));
      }
      list.append(item);
    }
  }

  function setVerdict(node, report, okText) {
    node.replaceChildren();
    node.dataset.verdict = report.ok ? "ok" : report.unsupported ? "unsupported" : "fail";
    node.dataset.step = report.failure ? report.failure.step : "";
    if (report.ok) {
      node.className = "ok";
      node.append(el("strong", null, "Verified. "), okText);
    } else if (report.unsupported) {
      node.className = "notice";
      node.append(el("strong", null, "No result. "), report.unsupported);
    } else {
      node.className = "alert";
      node.append(el("strong", null, "Not verified: step “" + report.failure.step + "” failed. "), report.failure.message);
    }
  }

  async function verify(event) {
    event.preventDefault();
    verdict.dataset.verdict = "running";
    verdict.dataset.step = "";
    if (support === null) support = await C.ed25519Support();
    const text = uploaded !== null ? uploaded : receiptBox.value;
    const report = await V.verifyReceipt(text, vkeyBox.value, { origin: originBox.value.trim(), support: support });
    verified = report.ok ? report.result : null;
    resultSection.hidden = false;
    const r = report.result;
    setVerdict(verdict, report, r ? "Entry " + r.leafIndex + " is in the log " + r.origin + " as signed at " + r.treeSize + " entries by the key " + r.verifier.name + "." : "");
    renderRows(stepsList, report);
    consistencyButton.disabled = !report.ok;
    consistencyNote.textContent = report.ok ? "" : "Verify a receipt first.";
    consistencyVerdict.replaceChildren();
    consistencyVerdict.className = "";
    consistencyVerdict.removeAttribute("data-verdict");
    consistencySteps.replaceChildren();
    verdict.focus();
  }

  async function checkConsistency() {
    if (verified === null) return;
    const base = logUrl.value.trim();
    if (!base) {
      consistencyVerdict.className = "notice";
      consistencyVerdict.dataset.verdict = "needs-url";
      consistencyVerdict.textContent = window.location.protocol === "file:"
        ? "This page was opened from a file, so it has no log to ask: enter the log's URL (for example http://127.0.0.1:8470). The log must allow cross-origin requests; with clearance serve, open its own /console/proof page instead."
        : "Enter the log's URL.";
      consistencySteps.replaceChildren();
      return;
    }
    consistencyButton.disabled = true;
    consistencyVerdict.dataset.verdict = "running";
    try {
      const report = await V.checkConsistency(base, verified);
      const latest = report.result ? report.result.latest : null;
      setVerdict(consistencyVerdict, report, latest ? "The log's latest checkpoint (" + latest.size + " entries) extends the receipt's (" + verified.treeSize + " entries)." : "");
      renderRows(consistencySteps, report);
    } finally {
      consistencyButton.disabled = false;
    }
  }

  async function start() {
    logUrl.value = window.location.protocol === "http:" || window.location.protocol === "https:" ? window.location.origin : "";
    consistencyButton.disabled = true;
    consistencyNote.textContent = "Verify a receipt first.";
    support = await C.ed25519Support();
    showSupport();
  }

  form.addEventListener("submit", function (event) {
    verify(event).catch(function (error) {
      verdict.className = "alert";
      verdict.textContent = "The viewer failed: " + error.message;
    });
  });
  receiptBox.addEventListener("input", function () { uploaded = null; });
  $("receipt-file").addEventListener("change", function (event) {
    readFile(event.target).then(function (text) {
      if (text === null) return;
      uploaded = text;
      receiptBox.value = text;
    }, function (error) {
      uploaded = null;
      receiptBox.value = "";
      verdict.className = "alert";
      resultSection.hidden = false;
      verdict.textContent = error.message;
    });
  });
  $("vkey-file").addEventListener("change", function (event) {
    readFile(event.target).then(function (text) {
      if (text !== null) vkeyBox.value = text.trim();
    }, function (error) {
      resultSection.hidden = false;
      verdict.className = "alert";
      verdict.textContent = error.message;
    });
  });
  const useServerKey = $("use-server-vkey");
  if (useServerKey) {
    useServerKey.addEventListener("click", function () {
      vkeyBox.value = $("server-vkey").textContent.trim();
      vkeyBox.focus();
    });
  }
  consistencyButton.addEventListener("click", function () {
    checkConsistency().catch(function (error) {
      consistencyVerdict.className = "alert";
      consistencyVerdict.textContent = "The viewer failed: " + error.message;
    });
  });
  start();
})();
