/* Draws every chart on the page. The server renders each Plotly figure as
 * <script type="application/json" id="fig-..."> (Django's json_script) next to a
 * <div data-figure="fig-..."> placeholder; this file is the only code that runs, so a
 * Content-Security-Policy without 'unsafe-inline' works. */
(function () {
  "use strict";

  var CONFIG = { displayModeBar: false, responsive: true };

  function drawAll() {
    if (typeof window.Plotly === "undefined") {
      return;
    }
    var placeholders = document.querySelectorAll("[data-figure]");
    Array.prototype.forEach.call(placeholders, function (el) {
      var blob = document.getElementById(el.getAttribute("data-figure"));
      if (!blob) {
        return;
      }
      var figure = JSON.parse(blob.textContent);
      window.Plotly.newPlot(el, figure.data, figure.layout, CONFIG);
    });
  }

  /* Editing a date in the filter bar means a custom range: select it, so Apply uses the dates. */
  function linkDatesToRange() {
    var range = document.querySelector("[data-range-select]");
    if (!range) {
      return;
    }
    Array.prototype.forEach.call(document.querySelectorAll("[data-custom-date]"), function (input) {
      input.addEventListener("change", function () {
        range.value = "custom";
      });
    });
  }

  function start() {
    drawAll();
    linkDatesToRange();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
