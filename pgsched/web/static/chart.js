// The job page's chart: fire lag (started_at - scheduled_for) and duration of scheduled runs,
// from /jobs/NAME/timings.json ([[unix seconds...], [lag...], [duration...]]), redrawn on the
// page's refresh cadence.
(function () {
  var el = document.getElementById("chart");
  if (!el || typeof uPlot === "undefined") return;
  var plot = null;
  function secs(u, vals) {
    return vals.map(function (v) {
      if (v == null) return "";
      if (Math.abs(v) >= 1) return v.toFixed(Math.abs(v) < 10 ? 1 : 0) + " s";
      var ms = v * 1000;
      return ms.toFixed(Math.abs(ms) < 10 && ms !== 0 ? 1 : 0) + " ms";
    });
  }
  function options(width) {
    return {
      width: width, height: 240,
      series: [
        {},
        { label: "fire lag", stroke: "#d9822b", width: 2, points: { size: 4 }, value: function (u, v) { return v == null ? "—" : v.toFixed(3) + " s"; } },
        { label: "duration", stroke: "#2b6cd9", width: 2, points: { size: 4 }, value: function (u, v) { return v == null ? "—" : v.toFixed(3) + " s"; } }
      ],
      axes: [{}, { values: secs, size: 60 }],
      scales: { x: { time: true } }
    };
  }
  function draw() {
    fetch(el.dataset.src, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
      if (!data[0].length) { el.innerHTML = '<p class="muted">No scheduled run has started yet.</p>'; return; }
      if (plot) { plot.setData(data); return; }
      el.innerHTML = "";
      plot = new uPlot(options(el.clientWidth || 800), data, el);
    });
  }
  draw();
  setInterval(draw, 5000);
  window.addEventListener("resize", function () { if (plot) plot.setSize({ width: el.clientWidth, height: 240 }); });
})();
