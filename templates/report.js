(function () {
  "use strict";
  var table = document.getElementById("interfaces");
  if (table) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var heads = table.tHead.rows[0].cells;
    var current = { col: -1, dir: 1 };
    var key = function (row, col) {
      var cell = row.cells[col];
      var v = cell.getAttribute("data-sort");
      return v === null ? cell.textContent.trim().toLowerCase() : v;
    };
    var sortBy = function (col) {
      var numeric = heads[col].getAttribute("data-type") === "num";
      var dir = current.col === col ? -current.dir : numeric ? -1 : 1;
      current = { col: col, dir: dir };
      var sorted = rows.slice().sort(function (a, b) {
        var x = key(a, col);
        var y = key(b, col);
        var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return c * dir;
      });
      sorted.forEach(function (r) {
        body.appendChild(r);
      });
      for (var i = 0; i < heads.length; i++) {
        heads[i].setAttribute(
          "aria-sort",
          i === col ? (dir > 0 ? "ascending" : "descending") : "none"
        );
      }
    };
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        sortBy(col);
      });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          sortBy(col);
        }
      });
    });
    var input = document.getElementById("filter");
    var only = document.getElementById("flagged-only");
    var shown = document.getElementById("shown");
    var apply = function () {
      var q = input.value.trim().toLowerCase();
      var n = 0;
      rows.forEach(function (r) {
        var text = r.getAttribute("data-interface").toLowerCase() + " " + r.textContent.toLowerCase();
        var ok = (!q || text.indexOf(q) >= 0) && (!only.checked || r.getAttribute("data-flagged") === "1");
        r.hidden = !ok;
        if (ok) {
          n += 1;
        }
      });
      shown.textContent = n + " of " + rows.length + " shown";
    };
    input.addEventListener("input", apply);
    only.addEventListener("change", apply);
    apply();
  }
  var toggle = function (open) {
    Array.prototype.forEach.call(document.querySelectorAll("details.iface"), function (d) {
      d.open = open;
    });
  };
  var expand = document.getElementById("expand-all");
  var collapse = document.getElementById("collapse-all");
  if (expand && collapse) {
    expand.addEventListener("click", function () {
      toggle(true);
    });
    collapse.addEventListener("click", function () {
      toggle(false);
    });
  }
  document.body.setAttribute("data-js", "ready");
})();
