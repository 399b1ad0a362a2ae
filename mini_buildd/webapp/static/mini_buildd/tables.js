// Filter box and sortable columns for the tables of every page (issue #18). A table with a header
// row (its <thead>, or a first row of <th> cells) gets a "Filter rows" box above it (rows not
// containing the text are hidden, also rows added later by the live event stream) and sorts by a
// column on a click, Enter or Space on its header (numbers as numbers). No inline script (CSP).
(function () {
  "use strict";

  function headerRow(table) {
    if (table.tHead && table.tHead.rows.length) {
      return table.tHead.rows[table.tHead.rows.length - 1];
    }
    const first = table.rows[0];
    if (first && first.cells.length > 1 && Array.from(first.cells).every(function (c) { return c.tagName === "TH"; })) {
      return first;
    }
    return null;
  }

  function bodyRows(table, header) {
    return Array.from(table.rows).filter(function (r) { return r !== header && r.parentNode.tagName !== "THEAD"; });
  }

  function compare(a, b) {
    const na = Number(a), nb = Number(b);
    if (a !== "" && b !== "" && !isNaN(na) && !isNaN(nb)) {
      return na - nb;
    }
    return a.localeCompare(b, undefined, {numeric: true, sensitivity: "base"});
  }

  function setup(table, n) {
    const header = headerRow(table);
    if (!header || table.dataset.tableTools === "off" || bodyRows(table, header).length < 2) {
      return;
    }
    const input = document.createElement("input");
    input.type = "search";
    input.className = "table-filter";
    input.placeholder = "Filter rows";
    input.setAttribute("aria-label", "Filter the rows of this table");
    input.id = "table-filter-" + n;
    table.parentNode.insertBefore(input, table);
    const apply = function () {
      const q = input.value.trim().toLowerCase();
      bodyRows(table, header).forEach(function (row) {
        row.hidden = q !== "" && row.textContent.toLowerCase().indexOf(q) < 0;
      });
    };
    input.addEventListener("input", apply);
    new MutationObserver(apply).observe(table, {childList: true, subtree: true});

    if (table.querySelector("[rowspan]") || header.querySelector("[colspan]")) {
      return;  // rows that span rows or columns do not sort
    }
    Array.from(header.cells).forEach(function (th, i) {
      th.classList.add("sortable");
      th.tabIndex = 0;
      th.setAttribute("aria-sort", "none");
      const sort = function () {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.from(header.cells).forEach(function (other) { other.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const rows = bodyRows(table, header);
        const text = function (row) { return row.cells[i] ? row.cells[i].textContent.trim() : ""; };
        rows.sort(function (a, b) { return compare(text(a), text(b)) * (ascending ? 1 : -1); });
        rows.forEach(function (row) { row.parentNode.appendChild(row); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          sort();
        }
      });
    });
  }

  document.querySelectorAll("main table").forEach(setup);
})();
