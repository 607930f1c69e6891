// Small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  // Times stay in UTC as the server wrote them (one format on every page); the reader's
  // own time zone is a tooltip.
  for (const el of document.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) el.title = "your time: " + when.toLocaleString();
  }
  // Filter forms: drop empty fields so URLs stay short and shareable.
  for (const form of document.querySelectorAll("form.filters")) {
    form.addEventListener("submit", function () {
      for (const field of form.querySelectorAll("input, select")) {
        if (field.value === "") field.disabled = true;
      }
    });
  }
  // Click a transaction signature to copy it.
  for (const el of document.querySelectorAll(".sig")) {
    el.style.cursor = "copy";
    el.addEventListener("click", function (event) {
      event.preventDefault();
      if (navigator.clipboard) navigator.clipboard.writeText(el.title || el.textContent).catch(function () {});
    });
  }
  // The overview follows the network: poll its live figures and redraw what changed.
  const live = document.getElementById("live");
  const every = live ? Number(live.getAttribute("data-refresh-s")) : 0;
  if (live && every > 0) {
    const cell = function (text, className) {
      const td = document.createElement("td");
      if (className) td.className = className;
      td.textContent = text;
      return td;
    };
    const drawBatches = function (batches) {
      const body = document.querySelector("#recent-settlements tbody");
      if (!body) return;
      const rows = batches.map(function (b) {
        const tr = document.createElement("tr");
        tr.setAttribute("data-batch", String(b.id));
        const state = document.createElement("span");
        state.className = "state " + b.state;
        state.textContent = b.state;
        const stateCell = cell("");
        stateCell.appendChild(state);
        const sig = cell(b.signature_text, "mono");
        sig.title = b.signature || "";
        tr.append(cell("#" + b.id), stateCell, cell(String(b.channels), "r num"),
          cell(b.amount_text, "r num"), sig);
        return tr;
      });
      body.replaceChildren.apply(body, rows);
      const empty = document.getElementById("no-settlements");
      if (empty) empty.hidden = batches.length > 0;
    };
    const refresh = function () {
      // A failed poll (coordinator restarting, network gone) waits for the next one quietly.
      fetch("/api/v1/overview", { headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (figures) {
          if (!figures) return;
          for (const el of live.querySelectorAll("[data-live]")) {
            const value = figures[el.getAttribute("data-live")];
            if (value !== undefined) el.textContent = String(value);
          }
          drawBatches(figures.recent_batches);
          live.setAttribute("data-updated", String(figures.at));
        })
        .catch(function () {})
        .finally(function () { setTimeout(refresh, every * 1000); });
    };
    setTimeout(refresh, every * 1000);
  }
})();
