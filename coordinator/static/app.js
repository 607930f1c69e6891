// Small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  // Show times in the reader's own time zone (the server renders UTC).
  for (const el of document.querySelectorAll("[data-ts]")) {
    const seconds = Number(el.getAttribute("data-ts"));
    if (!Number.isFinite(seconds) || seconds <= 0) continue;
    el.title = el.textContent;
    el.textContent = new Date(seconds * 1000).toLocaleString();
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
})();
