(function () {
  "use strict";
  document.documentElement.classList.add("js");
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v !== null) { return v === "" ? null : parseFloat(v); }
    return cell.textContent.trim().toLowerCase();
  }
  function compare(a, b) {
    if (a === null || b === null) { return a === b ? 0 : (a === null ? 1 : -1); }
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  }
  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = key(r.cells[index]), b = key(s.cells[index]);
      if (a === null || b === null) { return compare(a, b); }
      return ascending ? compare(a, b) : compare(b, a);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;
      th.title = (th.title ? th.title + " - " : "") + "click to sort";
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, index, th); }
      });
    });
  });
  function labels(row) {  // the text of the label cells: numbers are for sorting, not for filtering
    var out = [];
    for (var i = 0; i < row.cells.length; i++) {
      if (!row.cells[i].hasAttribute("data-v")) { out.push(row.cells[i].textContent); }
    }
    return (out.length ? out.join(" ") : row.textContent).toLowerCase();
  }
  Array.prototype.forEach.call(document.querySelectorAll(".filter input"), function (input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    var shown = input.closest(".filter").querySelector(".shown");
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var n = 0, rows = table.tBodies[0].rows;
      for (var i = 0; i < rows.length; i++) {
        var t = labels(rows[i]);
        var keep = words.every(function (w) { return t.indexOf(w) >= 0; });
        rows[i].hidden = !keep;
        if (keep) { n++; }
      }
      shown.textContent = words.length ? n + " of " + rows.length + " rows" : "";
    });
  });
})();
