// Live events page: follows the Server-Sent Events stream (mini_buildd/sse.py; the path is the
// data-stream attribute of #mbd-live) with the page's filters, from the page's newest event on
// (data-last-event-id; data-after when the queue was empty), and puts each new event on top of the
// events table. Rows mirror mini_buildd/webapp/eventrows.py. A plain script (no inline code: the
// page's CSP allows scripts from this site only); without it (or without EventSource) the page is
// the same table, reloaded by hand.
(function () {
  "use strict";
  var live = document.getElementById("mbd-live");
  var tbody = document.getElementById("mbd-events");
  if (!live || !tbody || !window.EventSource || !window.URLSearchParams) { return; }
  var streamPath = live.getAttribute("data-stream");
  var lastId = live.getAttribute("data-last-event-id") || "";
  var after = live.getAttribute("data-after") || "";
  var params = new URLSearchParams(window.location.search);
  var types = params.getAll("type").filter(function (t) { return t; }).map(function (t) { return t.toUpperCase(); });
  // the page's filters: its query (events page) or the live element's data-source (package page)
  var source = (params.get("source") || live.getAttribute("data-source") || "").trim();
  var distribution = (params.get("distribution") || "").trim();
  // every event type (the type filter's choices): each arrives as an SSE event of that name
  var allTypes = Array.prototype.map.call(document.querySelectorAll("#f-type option"), function (o) { return o.value; })
    .filter(function (t) { return t; });
  if (!allTypes.length) { allTypes = (live.getAttribute("data-types") || "").split(",").filter(function (t) { return t; }); }
  // events that change what the rest of the page shows (versions, logs): the page reloads itself a moment later
  var reloadOn = (live.getAttribute("data-reload-on") || "").split(",").filter(function (t) { return t; });
  var retryTimer = null;

  function q(path) { return encodeURI(path).replace(/#/g, "%23").replace(/\?/g, "%3F"); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function links(ev) {
    var x = ev.extra || {}, out = [];
    if (x.changes) {
      out.push(["changes", (ev.type === "BUILDING" ? "/mini_buildd/builds-dir/" : "/mini_buildd/events-dir/") + q(x.changes)]);
    }
    function logs(info, arch) {
      if (!info || typeof info !== "object") { return; }
      if (ev.type === "BUILDING" || ev.type === "PACKAGING") {
        if (info.bkey) { out.push(["live log " + arch, "/mini_buildd/builds/" + q(info.bkey) + "/"]); }
      } else if (info.buildlog) {
        out.push(["build log " + arch, "/mini_buildd/events-dir/" + q(info.buildlog)]);
      }
    }
    if (ev.type === "BUILDING" || ev.type === "BUILT") { logs(x, x.architecture || "?"); }
    ["buildrequests", "buildresults"].forEach(function (g) {
      Object.keys(x[g] || {}).sort().forEach(function (arch) { logs(x[g][arch], arch); });
    });
    return out;
  }
  var QA = [["B", "build", "sbuild_status"], ["L", "lintian", "sbuild_lintian"], ["P", "piuparts", "sbuild_piuparts"],
            ["A", "autopkgtest", "sbuild_autopkgtest"]];
  function qaState(field, word) {
    var w = String(word || "").toLowerCase().replace(/\s+/g, " ").trim();
    if (field === "sbuild_status") { return w === "successful" ? "pass" : (w === "" || w === "skipped") ? "none" : "fail"; }
    if (["pass", "info", "successful"].indexOf(w) >= 0) { return "pass"; }
    if (["error", "fail", "failed"].indexOf(w) >= 0) { return "fail"; }
    return ["warn", "no tests"].indexOf(w) >= 0 ? "warn" : "none";
  }
  function qaResults(ev) {
    var x = ev.extra || {};
    if (ev.type === "BUILT") { return [[x.architecture || "?", x]]; }
    if (ev.type === "INSTALLED" || ev.type === "FAILED") {
      return Object.keys(x.buildresults || {}).sort().filter(function (a) { return x.buildresults[a] && typeof x.buildresults[a] === "object"; })
        .map(function (a) { return [a, x.buildresults[a]]; });
    }
    return [];
  }
  function qaLetters(ev) {
    return qaResults(ev).map(function (r) {
      var arch = r[0], info = r[1];
      var span = el("span", {"class": "qa-arch", "data-arch": arch}, arch + " ");
      QA.forEach(function (c) {
        var attrs = {"class": "qa qa-" + qaState(c[2], info[c[2]]), "title": arch + " " + c[1] + ": " + (info[c[2]] || "none")};
        if (info.buildlog) { attrs.href = "/mini_buildd/events-dir/" + q(info.buildlog); }
        span.appendChild(el(info.buildlog ? "a" : "span", attrs, c[0]));
      });
      return span;
    });
  }
  function detail(ev) {
    var x = ev.extra || {}, t = "";
    if (x.error) { t = typeof x.error === "object" ? (x.error.detail || x.error.title || "") : String(x.error); }
    else if (ev.type === "MIGRATED" && x.from) { t = "from " + x.from; }
    t = String(t).replace(/\s+/g, " ").trim();
    return t.length <= 200 ? t : t.slice(0, 197) + "...";
  }
  function row(ev) {
    var tr = el("tr", {"class": "ev ev-" + ev.type + " ev-new", "data-type": ev.type, "data-source": ev.source,
                       "data-distribution": ev.distribution, "data-version": ev.version});
    var td = el("td");
    td.appendChild(el("time", {"datetime": ev.timestamp}, ev.timestamp.replace("T", " ").slice(0, 19)));
    tr.appendChild(td);
    td = el("td"); td.appendChild(el("span", {"class": "etype etype-" + ev.type}, ev.type)); tr.appendChild(td);
    tr.appendChild(el("td", {}, ev.distribution));
    td = el("td"); td.appendChild(el("a", {"href": "/mini_buildd/packages/" + encodeURIComponent(ev.source) + "/"}, ev.source)); tr.appendChild(td);
    tr.appendChild(el("td", {}, ev.version));
    td = el("td");
    var arch = ev.type === "BUILDING" ? (ev.extra || {}).architecture : null;
    var parts = [];
    if (arch) { parts.push(document.createTextNode("[" + arch + "]")); }
    var d = detail(ev);
    if (d && d !== arch) { parts.push(document.createTextNode(d)); }
    qaLetters(ev).forEach(function (s) { parts.push(s); });
    links(ev).forEach(function (l) { parts.push(el("a", {"href": l[1]}, l[0])); });
    parts.forEach(function (p, i) { if (i) { td.appendChild(document.createTextNode(" ")); } td.appendChild(p); });
    tr.appendChild(td);
    return tr;
  }
  function show(ev) {
    var table = document.getElementById("mbd-events-table"), empty = document.getElementById("mbd-events-empty");
    if (table) { table.hidden = false; }
    if (empty) { empty.hidden = true; }
    tbody.insertBefore(row(ev), tbody.firstChild);
  }
  function status(text) { live.textContent = text; }
  function streamUrl() {
    var q = new URLSearchParams();
    if (types.length) { q.set("types", types.join(",")); }
    if (source) { q.set("source", source); }
    if (distribution) { q.set("distribution", distribution); }
    if (lastId) { q.set("last_event_id", lastId); } else if (after) { q.set("after", after); }
    return streamPath + "?" + q.toString();
  }
  function onEvent(message) {
    var ev;
    try { ev = JSON.parse(message.data); } catch (e) { return; }
    if (message.lastEventId) { lastId = message.lastEventId; }
    show(ev);
    status("Live: connected; last event " + ev.timestamp.replace("T", " ").slice(0, 19) + " UTC.");
    if (reloadOn.indexOf(ev.type) >= 0) { window.setTimeout(function () { window.location.reload(); }, 1500); }
  }
  function connect() {
    retryTimer = null;
    // On a lost connection the browser reconnects by itself, sending Last-Event-ID (which the
    // server prefers to our last_event_id): nothing is missed, nothing comes twice.
    var stream = new EventSource(streamUrl());
    stream.onopen = function () { status("Live: connected; new events appear at the top."); };
    allTypes.forEach(function (t) { stream.addEventListener(t, onEvent); });
    stream.addEventListener("shutdown", function () { status("Live: the server is shutting down; reconnecting..."); });
    stream.onerror = function () {
      if (stream.readyState === EventSource.CLOSED) {
        // refused (e.g. 503: too many clients): the browser gives up; we try again later
        stream.close();
        status("Live: no connection; retrying...");
        if (retryTimer === null) { retryTimer = window.setTimeout(connect, 10000); }
      } else {
        status("Live: connection lost; reconnecting...");
      }
    };
  }
  connect();
}());
