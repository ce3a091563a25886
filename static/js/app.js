// Watchkeeper's few behaviours: draw server-built charts on one shared time axis, auto-refresh, follow running
// jobs, confirm risky forms.
(function () {
  "use strict";

  var PLOT_CONFIG = {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
  };

  function isTimeChart(div) {
    return div.layout && div.layout.xaxis && div.layout.xaxis.type === "date";
  }

  // One time axis for a page's charts, as in Grafana: zooming (or resetting) one applies the same x range to
  // every other chart with a date axis. `syncing` stops the charts answering each other's relayout in a loop.
  var syncing = false;

  function xUpdate(event) {
    if (event["xaxis.autorange"]) return { "xaxis.autorange": true };
    var range = event["xaxis.range"] ||
      (event["xaxis.range[0]"] !== undefined && [event["xaxis.range[0]"], event["xaxis.range[1]"]]);
    return range ? { "xaxis.range": range.slice() } : null;
  }

  function shareTimeAxis(charts) {
    charts.forEach(function (div) {
      div.on("plotly_relayout", function (event) {
        var update = xUpdate(event);
        if (syncing || !update) return;
        syncing = true;
        var others = charts.filter(function (other) { return other !== div; });
        Promise.all(others.map(function (other) { return Plotly.relayout(other, update); }))
          .then(function () { syncing = false; }, function () { syncing = false; });
      });
    });
  }

  // A trace with meta.link = i carries a URL in customdata[i]: clicking the point opens it (a drift check's report).
  function followPointLinks(div) {
    div.on("plotly_click", function (event) {
      var point = event.points && event.points[0];
      var meta = point && point.data.meta;
      if (!meta || meta.link === undefined) return;
      var url = point.customdata && point.customdata[meta.link];
      if (url) window.location.assign(url);
    });
  }

  function drawCharts() {
    if (typeof Plotly === "undefined") return Promise.resolve();
    var drawn = Array.prototype.map.call(document.querySelectorAll("[data-chart]"), function (div) {
      var source = document.getElementById(div.id + "-figure");
      if (!source) return null;
      var figure = JSON.parse(source.textContent);
      return Plotly.newPlot(div, figure.data, figure.layout, PLOT_CONFIG).then(function () {
        followPointLinks(div);
        return div;
      });
    });
    return Promise.all(drawn).then(function (divs) {
      shareTimeAxis(divs.filter(function (div) { return div && isTimeChart(div); }));
      document.body.dataset.chartsReady = "true";  // for the browser tests: every chart is drawn and wired
    });
  }

  // Auto-refresh (off unless the URL asks for it): reload every N seconds while the tab is visible; a hidden tab
  // waits, and catches up as soon as it is shown again.
  function autoRefresh() {
    var form = document.querySelector("[data-refresh-seconds]");
    if (!form) return;
    var periodMs = Number(form.dataset.refreshSeconds) * 1000;
    var due = Date.now() + periodMs;
    var timer = null;
    function schedule() {
      window.clearTimeout(timer);
      if (document.hidden) return;
      timer = window.setTimeout(function () { window.location.reload(); }, Math.max(0, due - Date.now()));
    }
    document.addEventListener("visibilitychange", schedule);
    schedule();
  }

  // Choosing an auto-refresh interval applies at once, keeping the range shown.
  function refreshSelect() {
    var select = document.querySelector("[data-refresh-select]");
    if (!select) return;
    select.addEventListener("change", function () {
      var params = new URLSearchParams(window.location.search);
      if (select.value) params.set("refresh", select.value); else params.delete("refresh");
      window.location.search = params.toString();
    });
  }

  // Jobs: poll each queued or running job every 2 s; stop once none is left.
  var POLL_MS = 2000;
  var LIVE = ["queued", "running"];

  function liveJobRows() {
    return Array.prototype.filter.call(document.querySelectorAll("[data-job-id]"), function (row) {
      return LIVE.indexOf(row.dataset.jobStatus) !== -1;
    });
  }

  function field(row, name) {
    return row.querySelector('[data-job-field="' + name + '"]');
  }

  function showJob(row, state) {
    row.dataset.jobStatus = state.status;
    var badge = field(row, "status");
    badge.textContent = state.status_label;
    badge.className = "badge job-" + state.status;
    field(row, "bar").style.width = state.progress + "%";
    field(row, "message").textContent = state.progress + "%" + (state.message ? " · " + state.message : "") +
      (state.elapsed ? " · " + state.elapsed + (state.finished ? "" : " so far") : "");
    var result = field(row, "result");
    if (state.error) {
      result.textContent = state.error.length > 120 ? state.error.slice(0, 119) + "…" : state.error;
      result.className = "small text-bad";
    } else if (state.candidate) {
      result.textContent = "candidate v" + state.candidate;
    }
    if (state.finished) {
      var cancel = field(row, "cancel");
      if (cancel) cancel.remove();
      var done = document.querySelector("[data-jobs-done]");
      if (done) done.hidden = false;
    }
  }

  function pollJobs() {
    var rows = liveJobRows();
    if (!rows.length) return;
    Promise.all(rows.map(function (row) {
      return fetch(row.dataset.progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (state) { if (state) showJob(row, state); })
        .catch(function () { /* a missed poll is retried on the next tick */ });
    })).then(function () {
      if (liveJobRows().length) window.setTimeout(pollJobs, POLL_MS);
    });
  }

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  function copyButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var text = document.querySelector(button.dataset.copy).textContent;
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      });
    });
  }

  // Progress bars carry their width as data-progress: the CSP allows no inline style attribute.
  function sizeBars() {
    document.querySelectorAll("[data-progress]").forEach(function (bar) {
      bar.style.width = bar.dataset.progress + "%";
    });
  }

  function start() {
    sizeBars();
    drawCharts();
    autoRefresh();
    refreshSelect();
    confirmForms();
    copyButtons();
    if (liveJobRows().length) window.setTimeout(pollJobs, POLL_MS);
  }

  // plotly.min.js is a deferred script: deferred scripts have run by DOMContentLoaded.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
