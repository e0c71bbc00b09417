// QServer's web page: live updates from the events streams (EventSource), nothing else.
// Our own small file, no framework and no build step. Without it the pages still work
// (reload for news).
"use strict";

(function () {
  const TERMINAL = new Set(["finished", "failed", "canceled"]);

  function seconds(start, finish) {
    if (!start) return null;
    const end = finish ? new Date(finish) : new Date();
    return (end - new Date(start)) / 1000;
  }

  function duration(s) {
    if (s === null || s === undefined || isNaN(s)) return "";
    if (s < 0) s = 0;
    if (s < 10) return s.toFixed(2) + " s";
    if (s < 60) return s.toFixed(1) + " s";
    let m = Math.floor(s / 60);
    const sec = Math.floor(s % 60);
    if (m < 60) return m + " min " + String(sec).padStart(2, "0") + " s";
    const h = Math.floor(m / 60);
    m = m % 60;
    return h + " h " + String(m).padStart(2, "0") + " min";
  }

  function when(iso) {
    if (!iso) return "";
    return new Date(iso).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  // Durations of jobs still running tick once a second.
  function tick() {
    document.querySelectorAll(".duration").forEach(function (el) {
      if (el.dataset.start && !el.dataset.finish) {
        el.textContent = duration(seconds(el.dataset.start, null));
      }
    });
  }

  function setStatus(container, status) {
    container.querySelectorAll('[data-field="status"]').forEach(function (el) {
      el.textContent = status;
      el.className = "status status-" + status;
    });
  }

  function setDuration(container, data) {
    container.querySelectorAll(".duration").forEach(function (el) {
      el.dataset.start = data.start_time || "";
      el.dataset.finish = data.finish_time || "";
      el.textContent = duration(seconds(data.start_time, data.finish_time));
    });
  }

  function live(indicator, source) {
    indicator.hidden = false;
    source.addEventListener("open", function () {
      indicator.textContent = "live";
      indicator.classList.remove("off");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        indicator.textContent = "not live: reload the page for news";
        indicator.classList.add("off");
      } else {
        indicator.textContent = "reconnecting…";
      }
    });
  }

  function cell(text, field) {
    const td = document.createElement("td");
    if (field) td.dataset.field = field;
    td.textContent = text || "";
    return td;
  }

  function newRow(data) {
    const base = document.body.dataset.base || "";
    const tr = document.createElement("tr");
    tr.dataset.id = data.id;
    const id = document.createElement("td");
    id.className = "id";
    const a = document.createElement("a");
    a.href = base + "/ui/job/" + data.id;
    a.title = data.id;
    a.textContent = data.id.slice(0, 8);
    id.appendChild(a);
    const st = document.createElement("td");
    const badge = document.createElement("span");
    badge.dataset.field = "status";
    st.appendChild(badge);
    const dur = document.createElement("td");
    const span = document.createElement("span");
    span.className = "duration";
    dur.appendChild(span);
    tr.append(id, st, cell(data.backend, "backend"), cell(data.owner, "owner"),
              cell(when(data.submission_date), "submitted"), dur);
    return tr;
  }

  function jobsTable() {
    const table = document.getElementById("jobs");
    const indicator = document.getElementById("live");
    if (!table || !indicator || !window.EventSource) return;
    const body = table.tBodies[0];
    const source = new EventSource(indicator.dataset.events);
    live(indicator, source);
    source.addEventListener("status", function (event) {
      const data = JSON.parse(event.data);
      let row = body.querySelector('tr[data-id="' + CSS.escape(data.id) + '"]');
      if (!row) {
        if (table.dataset.prepend !== "true") return;
        const statuses = table.dataset.statuses ? table.dataset.statuses.split(",") : [];
        if (statuses.length && statuses.indexOf(data.status) < 0) return;
        if (table.dataset.backend && table.dataset.backend !== data.backend) return;
        const empty = body.querySelector("tr.empty");
        if (empty) empty.remove();
        row = newRow(data);
        body.insertBefore(row, body.firstChild);
      }
      setStatus(row, data.status);
      setDuration(row, data);
      const statusCell = row.querySelector('[data-field="status"]').parentElement;
      statusCell.title = data.waiting_for ? "waiting for " + data.waiting_for : "";
    });
  }

  function jobPage() {
    const job = document.getElementById("job");
    const indicator = document.getElementById("live");
    if (!job || !indicator || !job.dataset.events || !window.EventSource) return;
    const source = new EventSource(job.dataset.events);
    live(indicator, source);
    source.addEventListener("status", function (event) {
      const data = JSON.parse(event.data);
      const changed = data.status !== job.dataset.status;
      job.dataset.status = data.status;
      setStatus(job, data.status);
      setDuration(job, data);
      ["start_time", "finish_time"].forEach(function (name) {
        job.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) { el.textContent = when(data[name]); });
      });
      ["attempts", "node_id", "waiting_for"].forEach(function (name) {
        job.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) {
          el.textContent = data[name] === null || data[name] === undefined ? "" : String(data[name]);
          if (name === "waiting_for") el.parentElement.hidden = !data[name];
        });
      });
      if (changed && TERMINAL.has(data.status)) { source.close(); window.location.reload(); }
    });
    source.addEventListener("end", function () {
      source.close();
      window.location.reload(); // the page draws the results (histograms) server-side
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    jobsTable();
    jobPage();
    confirmations();
    window.setInterval(tick, 1000);
  });
})();
