// Postwerk dashboard charts: draws each chart described by a <script type="application/json" id="…-data">
// block (dashboard/charts.py) with Chart.js (vendor/chart.umd.min.js). No inline script and no inline style in
// the markup: the page CSP holds. The tooltip is an HTML element beside the canvas (screen readers hear it;
// every number is also in the table under the chart).
(function () {
  "use strict";
  if (typeof window.Chart === "undefined") { return; }

  // Okabe-Ito: told apart with the common colour-vision deficiencies.
  var PALETTE = {
    delivered: "#009E73", deferred: "#E69F00", bounced: "#D55E00", complained: "#CC79A7", sent: "#0072B2",
    opened: "#0072B2", opened_total: "#56B4E9", machine: "#999999", clicked: "#009E73", clicked_total: "#8FD3BF",
    warning: "#E69F00", pause: "#1C2430", p50: "#009E73", p90: "#0072B2", p99: "#D55E00"
  };

  function formatValue(value, unit) {
    if (value === null || value === undefined) { return "—"; }
    if (unit === "percent") { return (value * 100).toFixed(2) + " %"; }
    if (unit === "seconds") {
      if (value < 60) { return "≤ " + value + " s"; }
      if (value < 3600) { return "≤ " + Math.round(value / 60) + " min"; }
      if (value < 86400) { return "≤ " + Math.round(value / 3600) + " h"; }
      return "≤ " + Math.round(value / 86400) + " d";
    }
    return String(Math.round(value));
  }

  function tick(unit) {
    return function (value) {
      if (unit === "percent") { return (value * 100).toLocaleString(undefined, { maximumFractionDigits: 2 }) + " %"; }
      if (unit === "seconds") { return formatValue(value, unit).replace("≤ ", ""); }
      return Number.isInteger(value) ? value.toLocaleString() : "";
    };
  }

  function externalTooltip(box, tooltipEl, unit) {
    return function (context) {
      var tip = context.tooltip;
      if (!tip || tip.opacity === 0) { tooltipEl.hidden = true; return; }
      tooltipEl.textContent = "";
      var title = document.createElement("strong");
      title.textContent = (tip.title || []).join(" ");
      tooltipEl.appendChild(title);
      (tip.dataPoints || []).forEach(function (point) {
        var line = document.createElement("span");
        line.className = "chart-tooltip-line";
        var swatch = document.createElement("i");
        swatch.className = "chart-swatch";
        swatch.style.background = point.dataset.borderColor;
        line.appendChild(swatch);
        line.appendChild(document.createTextNode(point.dataset.label + ": " + formatValue(point.raw, unit)));
        tooltipEl.appendChild(line);
      });
      tooltipEl.hidden = false;
      // Kept inside the chart's box, on the side of the pointer with room.
      var left = tip.caretX + 12;
      if (left + tooltipEl.offsetWidth > box.clientWidth) { left = Math.max(0, tip.caretX - tooltipEl.offsetWidth - 12); }
      tooltipEl.style.left = left + "px";
      tooltipEl.style.top = Math.max(0, Math.min(tip.caretY - 10, box.clientHeight - tooltipEl.offsetHeight)) + "px";
    };
  }

  function draw(config) {
    var canvas = document.getElementById(config.id);
    var tooltipEl = document.getElementById(config.id + "-tooltip");
    if (!canvas || !tooltipEl) { return; }
    var box = canvas.parentNode;
    if (config.horizontal) { box.style.height = Math.max(180, config.labels.length * (config.stacked ? 32 : 56) + 90) + "px"; }
    var datasets = config.datasets.map(function (d) {
      var color = PALETTE[d.color] || "#444444";
      return {
        label: d.label,
        data: d.values,
        type: d.kind === "line" ? "line" : "bar",
        stack: d.stack || undefined,
        backgroundColor: d.kind === "line" ? color : color + "D9",
        borderColor: color,
        borderWidth: d.kind === "line" ? 2 : 0,
        borderDash: d.reference ? [6, 4] : undefined,
        pointRadius: d.reference ? 0 : (config.labels.length > 60 ? 0 : 2),
        pointHitRadius: d.reference ? 0 : 6,
        spanGaps: true,
        order: d.kind === "line" ? 0 : 1
      };
    });
    var valueAxis = {
      stacked: config.stacked,
      beginAtZero: config.unit !== "seconds",
      type: config.unit === "seconds" ? "logarithmic" : "linear",
      ticks: { callback: tick(config.unit), precision: config.unit === "count" ? 0 : undefined },
      title: { display: true, text: config.unit === "percent" ? "rate" : (config.unit === "seconds" ? "seconds (log scale)" : "recipients") }
    };
    var labelAxis = { stacked: config.stacked, ticks: { autoSkip: true, maxRotation: 0, autoSkipPadding: 12 } };
    var chart = new window.Chart(canvas, {
      type: "bar",
      data: { labels: config.labels, datasets: datasets },
      options: {
        indexAxis: config.horizontal ? "y" : "x",
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false, axis: config.horizontal ? "y" : "x" },
        scales: config.horizontal ? { x: valueAxis, y: labelAxis } : { x: labelAxis, y: valueAxis },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, usePointStyle: true } },
          tooltip: {
            enabled: false,
            external: externalTooltip(box, tooltipEl, config.unit),
            filter: function (item) { return !item.dataset.borderDash; }
          }
        }
      }
    });
    canvas.addEventListener("mouseleave", function () { tooltipEl.hidden = true; });
    return chart;
  }

  function start() {
    var blocks = document.querySelectorAll('script[type="application/json"][id$="-data"]');
    Array.prototype.forEach.call(blocks, function (block) {
      try { draw(JSON.parse(block.textContent)); } catch (e) { window.console.error("chart " + block.id + ": " + e); }
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
