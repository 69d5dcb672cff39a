// job-scheduler console: live regions and the queues chart. No dependencies, no build step.
// An element with data-live="/events/..." and data-fragment="/fragments/..." re-renders from
// its fragment whenever its event stream says something changed.
"use strict";

function refresh(region) {
  return fetch(region.dataset.fragment, { credentials: "same-origin", cache: "no-store" })
    .then((answer) => {
      if (answer.status === 401) { window.location = "/login?next=" + encodeURIComponent(location.pathname); return null; }
      return answer.ok ? answer.text() : null;
    })
    .then((text) => { if (text !== null) { region.innerHTML = text; } });
}

function connect(region) {
  const events = new EventSource(region.dataset.live);
  let pending = null;
  events.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.queues) { chart.add(data.queues); }
    if (data.end) { events.close(); }
    // Coalesce bursts of changes into one fetch.
    if (pending === null) {
      pending = setTimeout(() => { pending = null; refresh(region); }, 100);
    }
  };
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) { setTimeout(() => connect(region), 2000); }
  };
}

const chart = {
  points: [],  // {time, waiting, rate}
  add(queues) {
    const waiting = queues.reduce((sum, q) => sum + q.waiting, 0);
    const rate = queues.reduce((sum, q) => sum + q.succeeded_last_minute, 0);
    this.points.push({ time: Date.now(), waiting, rate });
    const since = Date.now() - 5 * 60 * 1000;
    this.points = this.points.filter((p) => p.time >= since);
    this.draw();
  },
  draw() {
    const svg = document.getElementById("queues-chart");
    if (!svg || this.points.length === 0) { return; }
    const width = 600, height = 160, pad = 6;
    const now = Date.now();
    // The axis spans from the first point kept (at least 30 s) to now.
    const start = Math.min(this.points[0].time, now - 30 * 1000);
    const top = Math.max(1, ...this.points.map((p) => Math.max(p.waiting, p.rate)));
    const x = (p) => ((p.time - start) / (now - start)) * width;
    const y = (v) => height - pad - (v / top) * (height - 2 * pad);
    const line = (key) => this.points.map((p) => `${x(p).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    svg.innerHTML =
      `<line x1="0" y1="${height - pad}" x2="${width}" y2="${height - pad}" stroke="#e4e7ec"/>` +
      `<line x1="0" y1="${pad}" x2="${width}" y2="${pad}" stroke="#f2f4f7"/>` +
      `<polyline fill="none" stroke="#1f6feb" stroke-width="2" vector-effect="non-scaling-stroke" points="${line("waiting")}"/>` +
      `<polyline fill="none" stroke="#12805c" stroke-width="2" vector-effect="non-scaling-stroke" points="${line("rate")}"/>`;
    const last = this.points[this.points.length - 1];
    document.getElementById("chart-waiting").textContent = last.waiting;
    document.getElementById("chart-rate").textContent = last.rate;
    document.getElementById("chart-scale").textContent =
      `(top line: ${top}; ${Math.round((now - start) / 1000)} s shown)`;
  },
};

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(connect);
});
