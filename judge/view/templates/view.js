"use strict";
// Filters and detail toggles of the results viewer. Reads only the rows' data-* attributes and the filter
// controls; never writes markup (texts from users and models stay as the server escaped them).
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.pair-row"));
  var byId = function (id) { return document.getElementById(id); };
  var checked = function (id) { var el = byId(id); return el !== null && el.checked; };

  function apply() {
    var threshold = parseFloat(byId("f-threshold").value);
    var rule = byId("f-rule").value;
    var shown = 0;
    rows.forEach(function (row) {
      var d = row.dataset;
      var conf = d.confidence === "" ? NaN : parseFloat(d.confidence);
      var keep = true;
      if (checked("f-disagree") && d.disagree !== "1") { keep = false; }
      if (checked("f-low") && !(conf < threshold)) { keep = false; }
      if (checked("f-failed") && d.failed !== "1") { keep = false; }
      if (checked("f-escalated") && d.escalated !== "1") { keep = false; }
      if (checked("f-wrong") && d.wrong !== "1") { keep = false; }
      if (rule !== "" && d.rules.split(" ").indexOf(rule) < 0) { keep = false; }
      row.hidden = !keep;
      var detail = row.nextElementSibling;
      if (!keep && detail !== null && detail.classList.contains("detail")) {
        detail.hidden = true;
        row.querySelector("button.toggle").setAttribute("aria-expanded", "false");
      }
      if (keep) { shown += 1; }
    });
    byId("shown-count").textContent = String(shown);
  }

  document.getElementById("filters").addEventListener("input", apply);
  document.getElementById("filters").addEventListener("change", apply);
  document.getElementById("filters").addEventListener("submit", function (e) { e.preventDefault(); });
  rows.forEach(function (row) {
    var button = row.querySelector("button.toggle");
    button.addEventListener("click", function () {
      var detail = byId(button.getAttribute("aria-controls"));
      detail.hidden = !detail.hidden;
      button.setAttribute("aria-expanded", detail.hidden ? "false" : "true");
    });
  });
  apply();
}());
