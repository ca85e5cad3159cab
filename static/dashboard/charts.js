/* Draws every chart on the page. The server renders each Plotly figure as
 * <script type="application/json" id="fig-..."> (Django's json_script) next to a
 * <div data-figure="fig-..."> placeholder; this file is the only code that runs, so a
 * Content-Security-Policy without 'unsafe-inline' works.
 *
 * Drill-down: a click on a bar or point opens the events explorer (/events) at that bucket
 * with the page's filters. The figure's `drill` holds the explorer URL with the page's
 * filters, the bucket length and the page's range; a trace's `meta.drill` adds its own
 * filter (the model of a stacked bar, the error type, ...). Alert traces carry `meta.kind`:
 * a click on an incident marker, a threshold or a band opens its rule. */
(function () {
  "use strict";

  var CONFIG = { displayModeBar: false, responsive: true };

  function iso(ms) {
    return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  /* Bucket starts are UTC wall-clock strings ("2026-12-03 01:00"); previous-period points carry
   * their own bucket start as RFC 3339 in customdata. */
  function bucketStart(point) {
    var meta = (point.data && point.data.meta) || {};
    if (meta.kind === "previous" && typeof point.customdata === "string") {
      return Date.parse(point.customdata);
    }
    /* Plotly hands back "2026-12-03 01:00", or "2026-12-03" for a midnight. */
    var m = /^(\d{4}-\d\d-\d\d)(?:[ T](\d\d):(\d\d))?/.exec(String(point.x));
    return m ? Date.parse(m[1] + "T" + (m[2] || "00") + ":" + (m[3] || "00") + ":00Z") : NaN;
  }

  function callsUrl(drill, point) {
    var start = bucketStart(point);
    if (isNaN(start)) {
      return null;
    }
    var end = start + drill.step_seconds * 1000;
    var rangeStart = Date.parse(drill.start);
    var rangeEnd = Date.parse(drill.end);
    /* A daily bucket of a range that starts or ends mid-day: only the part inside the range. */
    if (start < rangeEnd && end > rangeStart) {
      start = Math.max(start, rangeStart);
      end = Math.min(end, rangeEnd);
    }
    var parts = drill.url.split("?");
    var params = new URLSearchParams(parts[1] || "");
    params.set("from", iso(start));
    params.set("to", iso(end));
    var meta = (point.data && point.data.meta) || {};
    Object.keys(meta.drill || {}).forEach(function (name) {
      params.set(name, meta.drill[name]);
    });
    return parts[0] + "?" + params.toString();
  }

  function onClick(figure) {
    return function (event) {
      if (!event || !event.points || !event.points.length) {
        return;
      }
      /* In "x unified" hover every trace at that x is in points: prefer an incident marker,
       * then a data trace (not the alert lines drawn over it). */
      var points = event.points;
      var incident = points.filter(function (p) { return (p.data.meta || {}).kind === "incident"; })[0];
      if (incident) {
        window.location.assign(incident.customdata);
        return;
      }
      var data = points.filter(function (p) {
        var kind = (p.data.meta || {}).kind;
        return !kind || kind === "previous";
      });
      if (data.length && figure.drill) {
        var url = callsUrl(figure.drill, data[0]);
        if (url) {
          window.location.assign(url);
        }
        return;
      }
      var rule = points.filter(function (p) { return (p.data.meta || {}).url; })[0];
      if (rule) {
        window.location.assign(rule.data.meta.url);
      }
    };
  }

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
      window.Plotly.newPlot(el, figure.data, figure.layout, CONFIG).then(function () {
        el.on("plotly_click", onClick(figure));
        el.setAttribute("data-drawn", "1");
      });
      if (figure.drill) {
        el.classList.add("drillable");
        el.setAttribute("title", "Click a bar or point to see its calls");
      }
    });
  }

  /* The range picker: a preset (1h ... 30d) or a custom from/to. Editing a from/to input
   * selects "Custom"; on Apply a preset sends no from/to (they would make the range custom). */
  function linkRangeInputs() {
    var form = document.querySelector("form.filters");
    var range = document.querySelector("[data-range-select]");
    if (!form || !range) {
      return;
    }
    var inputs = document.querySelectorAll("[data-custom-date]");
    Array.prototype.forEach.call(inputs, function (input) {
      input.addEventListener("change", function () {
        range.value = "custom";
      });
    });
    form.addEventListener("submit", function () {
      var custom = range.value === "custom";
      Array.prototype.forEach.call(inputs, function (input) {
        input.disabled = !custom;
      });
      if (custom) {
        range.disabled = true; /* from/to say it all */
      }
    });
  }

  function start() {
    drawAll();
    linkRangeInputs();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
