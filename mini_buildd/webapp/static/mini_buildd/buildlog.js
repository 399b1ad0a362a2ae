// Live build log: re-fetch the log's tail (?tail=1 on the build page) every few seconds while the
// server says the build is ongoing (header X-Mini-Buildd-Ongoing).
(function () {
  "use strict";
  var pre = document.getElementById("mbd-buildlog");
  var state = document.getElementById("mbd-build-state");
  if (!pre || pre.getAttribute("data-live") !== "1") { return; }
  function refresh() {
    fetch(window.location.pathname + "?tail=1", {cache: "no-store"}).then(function (r) {
      var ongoing = r.headers.get("X-Mini-Buildd-Ongoing") === "1";
      return r.text().then(function (text) {
        var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
        if (text) { pre.textContent = text; }
        if (atEnd) { pre.scrollTop = pre.scrollHeight; }
        if (ongoing) { window.setTimeout(refresh, 3000); }
        else if (state) { state.textContent = "finished"; state.className = ""; }
      });
    }).catch(function () { window.setTimeout(refresh, 10000); });
  }
  window.setTimeout(refresh, 3000);
}());
