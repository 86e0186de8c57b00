// clearance console: helpers every page script uses (hand-written, no dependencies).
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');

  function csrf() {
    return meta ? meta.content : "";
  }

  async function request(method, url, body) {
    const headers = { Accept: "application/json" };
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (method !== "GET") {
      headers["X-CSRF-Token"] = csrf();
    }
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (response.status === 401) {
      window.location.assign("/console/login?next=" + encodeURIComponent(location.pathname + location.search));
    }
    if (!response.ok) {
      const message = data && data.error ? data.error.message : response.status + " " + response.statusText;
      const error = new Error(message);
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }

  // Calls fn now and then every `ms` milliseconds while the page is visible.
  function poll(fn, ms) {
    let timer = null;
    async function tick() {
      timer = null;
      if (!document.hidden) {
        try { await fn(); } catch (e) { console.warn(e); }
      }
      timer = setTimeout(tick, ms);
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer !== null) { clearTimeout(timer); tick(); }
    });
    tick();
  }

  // Builds an element: el("a", {href: "/x", class: "badge"}, "text", child, ...).
  function el(tag, attrs) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (let i = 2; i < arguments.length; i++) {
      const child = arguments[i];
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // "12 s ago", "3 min ago", "in 4 min" for POSIX seconds `at` (now: Date.now()).
  function relative(at) {
    const delta = Math.round(at - Date.now() / 1000);
    const size = Math.abs(delta);
    const text = size < 60 ? size + " s" : size < 3600 ? Math.round(size / 60) + " min" : Math.round(size / 3600) + " h";
    return delta < 0 ? text + " ago" : "in " + text;
  }

  function isoTime(at) {
    return new Date(at * 1000).toISOString().replace(".000Z", "Z");
  }

  window.Clearance = { csrf: csrf, getJSON: function (url) { return request("GET", url); },
    postJSON: function (url, body) { return request("POST", url, body === undefined ? {} : body); },
    poll: poll, el: el, relative: relative, isoTime: isoTime };
})();
