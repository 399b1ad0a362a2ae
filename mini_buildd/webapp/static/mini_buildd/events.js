// Live events: long-poll /static/events.attach?after=<ISO> (one event per request) and put each new
// event on top of the events table. Rows mirror mini_buildd/webapp/eventrows.py.
(function () {
  "use strict";
  var live = document.getElementById("mbd-live");
  var tbody = document.getElementById("mbd-events");
  if (!live || !tbody) { return; }
  var after = live.getAttribute("data-after");
  var params = new URLSearchParams(window.location.search);
  var types = params.getAll("type").filter(function (t) { return t; }).map(function (t) { return t.toUpperCase(); });
  var source = (params.get("source") || "").trim();
  var distribution = (params.get("distribution") || "").trim();

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
  function detail(ev) {
    var x = ev.extra || {}, t = "";
    if (x.error) { t = typeof x.error === "object" ? (x.error.detail || x.error.title || "") : String(x.error); }
    else if (ev.type === "BUILT") { t = x.sbuild_status || ""; }
    else if (ev.type === "INSTALLED" || ev.type === "FAILED") {
      t = Object.keys(x.buildresults || {}).sort().map(function (a) { return a + ": " + ((x.buildresults[a] || {}).sbuild_status || "?"); }).join(" ");
    } else if (ev.type === "MIGRATED" && x.from) { t = "from " + x.from; }
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
    var arch = (ev.type === "BUILDING" || ev.type === "BUILT") ? (ev.extra || {}).architecture : null;
    var parts = [];
    if (arch) { parts.push(document.createTextNode("[" + arch + "]")); }
    var d = detail(ev);
    if (d && d !== arch) { parts.push(document.createTextNode(d)); }
    links(ev).forEach(function (l) { parts.push(el("a", {"href": l[1]}, l[0])); });
    parts.forEach(function (p, i) { if (i) { td.appendChild(document.createTextNode(" ")); } td.appendChild(p); });
    tr.appendChild(td);
    return tr;
  }
  function matches(ev) {
    return (!types.length || types.indexOf(ev.type) >= 0) && (!source || ev.source === source) &&
      (!distribution || ev.distribution === distribution);
  }
  function show(ev) {
    var table = document.getElementById("mbd-events-table"), empty = document.getElementById("mbd-events-empty");
    if (table) { table.hidden = false; }
    if (empty) { empty.hidden = true; }
    tbody.insertBefore(row(ev), tbody.firstChild);
  }
  function poll() {
    fetch("/static/events.attach?after=" + encodeURIComponent(after), {cache: "no-store"}).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function (ev) {
      after = ev.timestamp;
      if (matches(ev)) { show(ev); }
      live.textContent = "Live: last event " + ev.timestamp.replace("T", " ").slice(0, 19) + " UTC.";
      poll();
    }).catch(function () {
      live.textContent = "Live: connection lost, retrying...";
      window.setTimeout(poll, 5000);
    });
  }
  poll();
}());
