// clearance console, approvals: live countdowns, and the inbox refreshed without reload.
//
// The server renders every card and history row (templates/approval_parts.html); this
// script only swaps in the fresh ones from /console/api/approvals. A card the user is
// working in (focus inside, or a reason typed) is never replaced: only its votes are
// updated, and when it is no longer pending it is marked so and its buttons disabled.
"use strict";
(function () {
  const C = window.Clearance;
  const root = document.getElementById("approvals");
  if (!root) return;
  // Seconds to add to this browser's clock to get the server's (countdowns use the server's).
  let offset = Number(root.dataset.now) - Date.now() / 1000;

  function serverNow() {
    return Date.now() / 1000 + offset;
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // Same wording as left_text() in pages/approvals.py.
  function leftText(seconds) {
    if (seconds <= 0) return "expired";
    const s = Math.floor(seconds);
    if (s < 60) return s + " s left";
    if (s < 3600) return Math.floor(s / 60) + " min " + pad(s % 60) + " s left";
    if (s < 86400) return Math.floor(s / 3600) + " h " + pad(Math.floor((s % 3600) / 60)) + " min left";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h left";
  }

  function disable(card) {
    card.querySelectorAll("form.vote button, form.vote textarea").forEach(function (control) {
      control.disabled = true;
    });
  }

  function tick() {
    root.querySelectorAll("time.countdown").forEach(function (time) {
      const left = Number(time.dataset.expiresAt) - serverNow();
      const text = leftText(left);
      if (time.textContent !== text) time.textContent = text;
      if (left <= 0) {
        const card = time.closest("article.approval");
        if (card && !card.classList.contains("expired")) {
          card.classList.add("expired");
          disable(card);
        }
      }
    });
  }

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  }

  function busy(card) {
    const reason = card.querySelector("textarea");
    return card.contains(document.activeElement) || (reason !== null && reason.value.trim() !== "");
  }

  function announce(text) {
    const live = document.getElementById("live-status");
    if (live) live.textContent = text;
  }

  function updatePending(items) {
    const list = document.getElementById("pending-list");
    const wanted = [];
    const fresh = [];
    for (const item of items) {
      const id = "approval-" + item.approval_id;
      let card = document.getElementById(id);
      if (card === null) {
        card = fragment(item.card).firstElementChild;
        fresh.push(item);
      } else if (card.dataset.version !== item.version) {
        const replacement = fragment(item.card).firstElementChild;
        if (busy(card)) {
          card.querySelector("section.votes").replaceWith(replacement.querySelector("section.votes"));
          card.dataset.version = item.version;
        } else {
          card.replaceWith(replacement);
          card = replacement;
        }
      }
      wanted.push(card);
    }
    // Cards no longer pending: gone, unless the user is working in one.
    const keep = new Set(wanted);
    Array.from(list.children).forEach(function (card) {
      if (keep.has(card)) return;
      if (busy(card) && !card.classList.contains("closed")) {
        card.classList.add("closed");
        disable(card);
        const note = C.el("p", { class: "notice", role: "status" },
          "This approval was decided or expired meanwhile; see the history below.");
        card.append(note);
      } else if (!busy(card)) {
        card.remove();
      }
    });
    // Put the wanted cards in order, moving only those out of place.
    wanted.forEach(function (card, i) {
      const at = list.children[i];
      if (at !== card) list.insertBefore(card, at || null);
    });
    document.getElementById("pending-empty").hidden = items.length > 0;
    if (fresh.length === 1) {
      announce("New approval: " + fresh[0].action + " for " + fresh[0].principal);
    } else if (fresh.length > 1) {
      announce(fresh.length + " new approvals");
    }
  }

  let historyShown = null;

  function updateHistory(items) {
    const rows = items.map(function (item) { return item.row; }).join("");
    if (rows === historyShown) return;
    historyShown = rows;
    document.getElementById("history-rows").replaceChildren(fragment(rows));
    document.getElementById("history-empty").hidden = items.length > 0;
  }

  async function refresh() {
    const data = await C.getJSON(root.dataset.api);
    offset = data.now - Date.now() / 1000;
    updatePending(data.pending);
    document.getElementById("pending-count").textContent =
      "(" + data.pending_total + (data.pending_more ? "+" : "") + ")";
    if (root.dataset.historyLive === "1") updateHistory(data.history);
    tick();
  }

  tick();
  setInterval(tick, 1000);
  if (root.dataset.api) {
    // The first poll would only repeat what the server just rendered: wait one interval.
    setTimeout(function () { C.poll(refresh, Number(root.dataset.poll) || 3000); },
      Number(root.dataset.poll) || 3000);
  }
})();
