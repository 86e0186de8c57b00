// Lineage explorer: draws a trace's requests as a layered graph under its mandate.
//
// The layout is computed once and the SVG drawn once, however large the trace: a node's
// layer is its depth in the parent chain (requests without a parent hang under the
// mandate), and within a layer nodes keep their parents' order, then ledger order. Each
// leaf gets its own row and a parent sits in the middle of its children, so subtrees
// never overlap. Panning and zooming change only the SVG's viewBox; searching only
// toggles classes. Hand-written, no dependencies.
"use strict";
(function () {
  const section = document.getElementById("lineage");
  if (!section) return;
  const C = window.Clearance;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("lineage-svg");
  const status = document.getElementById("lineage-status");
  const searchInput = document.getElementById("lineage-search");
  const searchForm = document.getElementById("lineage-search-form");
  const nextButton = document.getElementById("lineage-next");
  const countOut = document.getElementById("lineage-count");

  const NODE_W = 184, NODE_H = 32, COLUMN = 244, ROW = 44;
  const MANDATE_W = 232, MANDATE_H = 96, FIRST_X = MANDATE_W + 64, MARGIN = 40;
  const MIN_SCALE = 0.02, MAX_SCALE = 4, READABLE = 0.6, LARGEST_FIT = 1.2;
  const COMPACT_HEIGHT = 420;
  const EFFECT_GLYPH = { allow: "✓", deny: "✕", approval_required: "?" };

  let nodes = [];          // the graph's nodes, in ledger order, with x, y, depth, element
  let extent = { w: 1, h: 1 };
  let view = { x: 0, y: 0, w: 1, h: 1 };
  let home = null;         // the first view (Reset)
  let matches = [];
  let matchAt = -1;

  function make(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const name in attrs) node.setAttribute(name, attrs[name]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clip(text, size) {
    return text.length > size ? text.slice(0, size - 1) + "…" : text;
  }

  // `text` in at most `limit` lines of at most `size` characters, broken between words;
  // what does not fit ends the last line with an ellipsis.
  function wrap(text, size, limit) {
    const lines = [];
    let line = "";
    for (const word of text.split(/\s+/).filter(Boolean)) {
      const longer = line ? line + " " + word : word;
      if (longer.length <= size || !line) {
        line = longer;
      } else {
        lines.push(line);
        line = word;
      }
    }
    if (line) lines.push(line);
    if (lines.length > limit) lines.splice(limit - 1, lines.length, lines.slice(limit - 1).join(" "));
    return lines.map(function (part) { return clip(part, size); });
  }

  function bounds(mandate) {
    const names = Object.keys(mandate.bounds || {}).sort();
    return names.map(function (name) { return name + ": " + JSON.stringify(mandate.bounds[name]); }).join(", ");
  }

  // --- layout (once) ---------------------------------------------------------------

  function layout(list) {
    const byId = new Map();
    const roots = [];
    for (const node of list) {
      node.kids = [];
      const parent = node.parent_id === null ? undefined : byId.get(node.parent_id);
      // A parent is always decided first; anything else (never written by the gate) is a root.
      if (parent !== undefined && parent.index < node.index) {
        node.depth = parent.depth + 1;
        parent.kids.push(node);
      } else {
        node.depth = 0;
        roots.push(node);
      }
      byId.set(node.request_id, node);
    }
    let slot = 0;
    let deepest = -1;
    const stack = [];
    for (let i = roots.length - 1; i >= 0; i--) stack.push([roots[i], false]);
    while (stack.length) {
      const [node, placedKids] = stack.pop();
      node.x = FIRST_X + node.depth * COLUMN;
      deepest = Math.max(deepest, node.depth);
      const kids = node.kids;
      if (!kids.length) {
        node.y = slot++ * ROW;
      } else if (placedKids) {
        node.y = (kids[0].y + kids[kids.length - 1].y) / 2;
      } else {
        stack.push([node, true]);
        for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], false]);
      }
    }
    const mandateY = roots.length ? (roots[0].y + roots[roots.length - 1].y) / 2 + NODE_H / 2 - MANDATE_H / 2 : 0;
    return {
      roots: roots,
      mandate: { x: 0, y: mandateY },
      width: FIRST_X + (deepest + 1) * COLUMN,
      height: Math.max(slot * ROW, MANDATE_H),
    };
  }

  // --- drawing (once) --------------------------------------------------------------

  function edgePath(x1, y1, x2, y2) {
    const middle = (x1 + x2) / 2;
    return "M" + x1 + " " + y1 + "C" + middle + " " + y1 + " " + middle + " " + y2 + " " + x2 + " " + y2;
  }

  function nodeTitle(node) {
    return node.action + " — " + node.effect.replace("_", " ") +
      "\nrequest " + node.request_id +
      "\nrules: " + (node.rules.length ? node.rules.join(", ") : "none matched") +
      "\noutcome: " + (node.outcome || "none reported") +
      (node.taints ? "\nuntrusted output: its result made the trace untrusted" : "") +
      (node.tainted ? "\ntainted: decided after untrusted output entered the trace" : "");
  }

  function drawNode(node) {
    const classes = ["node", node.effect, "outcome-" + (node.outcome || "none")];
    if (node.tainted) classes.push("tainted");
    if (node.taints) classes.push("taints");
    const link = make("a", {
      href: "/console/requests/" + encodeURIComponent(node.request_id),
      class: classes.join(" "),
      transform: "translate(" + node.x + " " + node.y + ")",
      "data-request": node.request_id,
      "data-action": node.action,
      "data-position": node.position,
    });
    link.append(
      make("title", {}, nodeTitle(node)),
      make("rect", { class: "halo", x: -5, y: -5, width: NODE_W + 10, height: NODE_H + 10, rx: 9 }),
      make("rect", { class: "box", width: NODE_W, height: NODE_H, rx: 6 }),
      make("text", { class: "glyph", x: 14, y: 21 }, EFFECT_GLYPH[node.effect] || "·"),
      make("text", { class: "label", x: 27, y: 21 }, clip(node.action, 18))
    );
    if (node.taints) link.append(make("text", { class: "taint-mark", x: NODE_W - 30, y: 21 }, "!"));
    if (node.outcome === "error") {
      link.append(make("rect", { class: "outcome error", x: NODE_W - 18, y: NODE_H / 2 - 5, width: 10, height: 10 }));
    } else {
      link.append(make("circle", { class: "outcome " + (node.outcome === "ok" ? "ok" : "none"), cx: NODE_W - 13, cy: NODE_H / 2, r: 5 }));
    }
    node.element = link;
    return link;
  }

  function drawMandate(graph, where) {
    const group = make("g", { class: "mandate", transform: "translate(" + where.x + " " + where.y + ")" });
    const summary = bounds(graph.mandate);
    group.append(
      make("title", {}, "Mandate: " + (graph.mandate.text || "(no text)") + (summary ? "\nbounds: " + summary : "") +
        (graph.principal ? "\nprincipal: " + graph.principal : "")),
      make("rect", { class: "mandate-box", width: MANDATE_W, height: MANDATE_H, rx: 8 }),
      make("text", { class: "title", x: 12, y: 21 }, "Mandate")
    );
    wrap(graph.mandate.text || "(no text)", 31, 2).forEach(function (line, i) {
      group.append(make("text", { class: "line", x: 12, y: 42 + i * 17 }, line));
    });
    group.append(make("text", { class: "line bounds", x: 12, y: 82 }, clip(summary || "no bounds", 31)));
    return group;
  }

  function draw(graph, placed) {
    const edges = make("g", { class: "edges" });
    const drawn = make("g", { class: "nodes" });
    const mandateRight = placed.mandate.x + MANDATE_W, mandateMid = placed.mandate.y + MANDATE_H / 2;
    const byId = new Map(nodes.map(function (n) { return [n.request_id, n]; }));
    for (const node of nodes) {
      const parent = node.depth === 0 ? null : byId.get(node.parent_id);
      const d = parent
        ? edgePath(parent.x + NODE_W, parent.y + NODE_H / 2, node.x, node.y + NODE_H / 2)
        : edgePath(mandateRight, mandateMid, node.x, node.y + NODE_H / 2);
      edges.append(make("path", { class: node.tainted ? "edge tainted" : "edge", d: d }));
      drawn.append(drawNode(node));
    }
    const fragment = document.createDocumentFragment();
    fragment.append(edges, drawMandate(graph, placed.mandate), drawn);
    svg.replaceChildren(fragment);
  }

  // --- the view: only the viewBox changes ------------------------------------------

  function aspect() {
    const box = svg.getBoundingClientRect();
    return box.width > 0 ? box.height / box.width : 0.6;
  }

  function scale() {
    const width = svg.getBoundingClientRect().width || 1;
    return width / view.w;
  }

  function apply() {
    svg.setAttribute("viewBox", [view.x, view.y, view.w, view.h].map(function (v) { return Math.round(v * 100) / 100; }).join(" "));
  }

  function setView(x, y, w) {
    const width = svg.getBoundingClientRect().width || 1;
    const lowest = Math.min(MIN_SCALE, width / (extent.w + 2 * MARGIN));
    const clamped = Math.min(Math.max(w, width / MAX_SCALE), width / lowest);
    view = { x: x, y: y, w: clamped, h: clamped * aspect() };
    apply();
  }

  function zoomAt(px, py, factor) {
    const w = view.w / factor;
    const ratio = w / view.w;
    setView(px - (px - view.x) * ratio, py - (py - view.y) * ratio, w);
  }

  function zoomCentre(factor) {
    zoomAt(view.x + view.w / 2, view.y + view.h / 2, factor);
  }

  function pan(dx, dy) {
    setView(view.x + dx, view.y + dy, view.w);
  }

  function fitAll() {
    const width = svg.getBoundingClientRect().width || 1;
    const w = Math.max(extent.w + 2 * MARGIN, (extent.h + 2 * MARGIN) / aspect(), width / LARGEST_FIT);
    setView(-MARGIN - (w - extent.w - 2 * MARGIN) / 2, -MARGIN - (w * aspect() - extent.h - 2 * MARGIN) / 2, w);
  }

  function centreOn(x, y, readable) {
    const width = svg.getBoundingClientRect().width || 1;
    const w = readable && scale() < READABLE ? width : view.w;
    setView(x - w / 2, y - (w * aspect()) / 2, w);
  }

  function firstView(placed) {
    // A small graph gets a shorter frame rather than a sea of blank space.
    if (extent.h + 2 * MARGIN <= COMPACT_HEIGHT) svg.classList.add("compact");
    const width = svg.getBoundingClientRect().width || 1;
    const fitScale = Math.min(width / (extent.w + 2 * MARGIN), width * aspect() / (extent.h + 2 * MARGIN));
    if (fitScale >= READABLE) {
      fitAll();
    } else {
      // Too large to read whole: start at the mandate, at full size.
      setView(-MARGIN, placed.mandate.y + MANDATE_H / 2 - (width * aspect()) / 2, width);
    }
    home = { x: view.x, y: view.y, w: view.w };
  }

  function reset() {
    if (home) setView(home.x, home.y, home.w);
  }

  function pointAt(clientX, clientY) {
    const box = svg.getBoundingClientRect();
    return { x: view.x + (clientX - box.left) * view.w / box.width, y: view.y + (clientY - box.top) * view.h / box.height };
  }

  function visible(node) {
    return node.x >= view.x && node.y >= view.y && node.x + NODE_W <= view.x + view.w && node.y + NODE_H <= view.y + view.h;
  }

  function wire() {
    let drag = null;
    let dragged = false;
    svg.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      drag = { id: event.pointerId, x: event.clientX, y: event.clientY, view: view, moving: false };
      dragged = false;
    });
    svg.addEventListener("pointermove", function (event) {
      if (!drag || drag.id !== event.pointerId) return;
      const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!drag.moving && Math.abs(dx) + Math.abs(dy) < 5) return;
      if (!drag.moving) {
        drag.moving = true;
        svg.setPointerCapture(event.pointerId);
        svg.classList.add("panning");
      }
      const perPixel = drag.view.w / (svg.getBoundingClientRect().width || 1);
      setView(drag.view.x - dx * perPixel, drag.view.y - dy * perPixel, drag.view.w);
    });
    function end(event) {
      if (!drag || drag.id !== event.pointerId) return;
      dragged = drag.moving;
      drag = null;
      svg.classList.remove("panning");
    }
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);
    // A drag that ends over a request must not open it.
    svg.addEventListener("click", function (event) {
      if (dragged) {
        event.preventDefault();
        event.stopPropagation();
        dragged = false;
      }
    }, true);
    svg.addEventListener("wheel", function (event) {
      event.preventDefault();
      const at = pointAt(event.clientX, event.clientY);
      const delta = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
      zoomAt(at.x, at.y, Math.exp(-delta * 0.002));
    }, { passive: false });
    svg.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      const step = 0.15;
      const moves = {
        ArrowLeft: [-view.w * step, 0], ArrowRight: [view.w * step, 0],
        ArrowUp: [0, -view.h * step], ArrowDown: [0, view.h * step],
      };
      if (moves[event.key]) {
        pan(moves[event.key][0], moves[event.key][1]);
      } else if (event.key === "+" || event.key === "=") {
        zoomCentre(1.25);
      } else if (event.key === "-" || event.key === "_") {
        zoomCentre(1 / 1.25);
      } else if (event.key === "0") {
        reset();
      } else {
        return;
      }
      event.preventDefault();
    });
    // Tabbing to a request off screen brings it into view.
    svg.addEventListener("focusin", function (event) {
      const link = event.target.closest ? event.target.closest("a.node") : null;
      if (!link) return;
      const node = nodes[Number(link.dataset.position)];
      if (node && !visible(node)) centreOn(node.x + NODE_W / 2, node.y + NODE_H / 2, true);
    });
    document.getElementById("lineage-zoom-in").addEventListener("click", function () { zoomCentre(1.25); });
    document.getElementById("lineage-zoom-out").addEventListener("click", function () { zoomCentre(1 / 1.25); });
    document.getElementById("lineage-fit").addEventListener("click", fitAll);
    document.getElementById("lineage-reset").addEventListener("click", reset);
    window.addEventListener("resize", function () { setView(view.x, view.y, view.w); });
    searchInput.addEventListener("input", search);
    searchForm.addEventListener("submit", function (event) {
      event.preventDefault();
      nextMatch();
    });
  }

  // --- search by action --------------------------------------------------------------

  function search() {
    const query = searchInput.value.trim().toLowerCase();
    if (matchAt >= 0 && matches[matchAt]) matches[matchAt].element.classList.remove("current");
    matches = [];
    matchAt = -1;
    for (const node of nodes) {
      const hit = query !== "" && node.action.toLowerCase().includes(query);
      node.element.classList.toggle("match", hit);
      if (hit) matches.push(node);
    }
    nextButton.disabled = matches.length === 0;
    svg.dataset.matches = String(matches.length);
    if (query === "") {
      countOut.textContent = "";
    } else if (matches.length === 0) {
      countOut.textContent = "No request matches";
    } else {
      countOut.textContent = matches.length.toLocaleString("en") + (matches.length === 1 ? " request matches" : " requests match");
    }
  }

  function nextMatch() {
    if (!matches.length) return;
    if (matchAt >= 0) matches[matchAt].element.classList.remove("current");
    matchAt = (matchAt + 1) % matches.length;
    const node = matches[matchAt];
    node.element.classList.add("current");
    centreOn(node.x + NODE_W / 2, node.y + NODE_H / 2, true);
    countOut.textContent = "Match " + (matchAt + 1).toLocaleString("en") + " of " + matches.length.toLocaleString("en") +
      ": " + node.action + " (" + node.request_id + ")";
  }

  // --- summary -------------------------------------------------------------------------

  function card(value, label) {
    return C.el("div", { class: "card" }, C.el("div", { class: "value", text: value.toLocaleString("en") }),
      C.el("div", { class: "label", text: label }));
  }

  function summarize(graph) {
    const count = function (test) { return nodes.filter(test).length; };
    document.getElementById("lineage-summary").replaceChildren(
      card(graph.total, "requests"),
      card(count(function (n) { return n.effect === "allow"; }), "allowed"),
      card(count(function (n) { return n.effect === "deny"; }), "denied"),
      card(count(function (n) { return n.effect === "approval_required"; }), "needed approval"),
      card(count(function (n) { return n.outcome === "error"; }), "ran with an error"),
      card(count(function (n) { return n.tainted; }), "tainted")
    );
  }

  // --- load ------------------------------------------------------------------------------

  async function load() {
    const started = performance.now();
    let graph;
    try {
      graph = await C.getJSON("/console/api/traces/" + encodeURIComponent(section.dataset.trace) + "/graph");
    } catch (error) {
      status.textContent = "Could not load the trace: " + error.message;
      status.classList.add("alert");
      return;
    }
    const fetched = performance.now();
    nodes = graph.nodes;
    nodes.forEach(function (node, position) { node.position = position; });
    const placed = layout(nodes);
    extent = { w: placed.width, h: placed.height };
    draw(graph, placed);
    wire();
    firstView(placed);
    summarize(graph);
    const drawnMs = Math.round(performance.now() - fetched);
    svg.dataset.nodes = String(nodes.length);
    svg.dataset.renderMs = String(drawnMs);
    svg.dataset.loadMs = String(Math.round(performance.now() - started));
    let text = nodes.length === 0
      ? "No request was decided in this trace yet."
      : nodes.length.toLocaleString("en") + (nodes.length === 1 ? " request" : " requests") + ", drawn in " + drawnMs + " ms.";
    if (graph.truncated) {
      text = "This trace has " + graph.total.toLocaleString("en") + " requests; the graph shows the first " +
        nodes.length.toLocaleString("en") + ".";
    }
    status.textContent = text;
    svg.dataset.state = "ready";
  }

  load();
})();
