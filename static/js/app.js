// Watchkeeper's few behaviours: draw server-built charts, follow running jobs, confirm risky forms.
(function () {
  "use strict";

  var PLOT_CONFIG = {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
  };

  function drawCharts() {
    if (typeof Plotly === "undefined") return;
    document.querySelectorAll("[data-chart]").forEach(function (div) {
      var source = document.getElementById(div.id + "-figure");
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      Plotly.newPlot(div, figure.data, figure.layout, PLOT_CONFIG);
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
    confirmForms();
    copyButtons();
    if (liveJobRows().length) window.setTimeout(pollJobs, POLL_MS);
  }

  // plotly.min.js is a deferred script: deferred scripts have run by DOMContentLoaded.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
