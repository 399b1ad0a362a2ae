// Suggestions for the header's package search box (issue #18): on the first focus, the names of
// every source and binary package (the names call of /mini_buildd/packages/?names=1, JSON) fill
// the box's <datalist>. No inline script (CSP).
(function () {
  "use strict";
  const box = document.querySelector("form.search input[name=q]");
  const list = document.getElementById("mbd-package-names");
  if (!box || !list) {
    return;
  }
  let loaded = false;
  box.addEventListener("focus", function () {
    if (loaded) {
      return;
    }
    loaded = true;
    fetch("/mini_buildd/packages/?names=1", {headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (names) {
        names.forEach(function (name) {
          const option = document.createElement("option");
          option.value = name;
          list.appendChild(option);
        });
      })
      .catch(function () { loaded = false; });
  });
})();
