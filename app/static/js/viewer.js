// The audit viewer's filters and table in the browser: a local date-time picker over each UTC time field (the
// form still sends UTC ISO), the "last hour / 24 h / 7 days" presets, a text selection that survives polls, and
// the keys of its tabs.
(function () {
  "use strict";

  function utcIso(date) {
    return date.toISOString().slice(0, 19) + "Z";
  }

  function two(n) { return String(n).padStart(2, "0"); }

  // The value a datetime-local input shows for a UTC ISO time: the same moment on this browser's clock.
  function localValue(iso) {
    const date = new Date(iso);
    if (!iso || isNaN(date)) return "";
    return date.getFullYear() + "-" + two(date.getMonth() + 1) + "-" + two(date.getDate()) + "T" +
      two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds());
  }

  // Each UTC field (name since/until) hides behind a native picker in local time; the field keeps the UTC value.
  function enhance(root) {
    root.querySelectorAll("input[data-utc-field]:not([data-enhanced])").forEach(function (field) {
      const picker = document.createElement("input");
      picker.type = "datetime-local";
      picker.step = 1;
      picker.className = "utc-picker";
      picker.value = localValue(field.value);
      field.dataset.enhanced = "";
      field.type = "hidden";
      field.after(picker);
      const zone = field.closest("label").querySelector(".zone");
      // The label names the zone the picker shows: this browser's (static/js/times.js).
      if (zone) zone.textContent = "(" + (window.GatehouseTimes ? window.GatehouseTimes.zoneLabel() : "your time") + ")";
    });
    root.querySelectorAll(".time-presets[hidden]").forEach(function (presets) { presets.hidden = false; });
  }

  // Before htmx or the form reads the fields: a picker's change writes its UTC field.
  document.addEventListener("change", function (event) {
    if (!event.target.matches("input.utc-picker")) return;
    const field = event.target.previousElementSibling;
    const date = new Date(event.target.value);  // no zone in the value: this browser's local time
    field.value = event.target.value && !isNaN(date) ? utcIso(date) : "";
  }, true);

  document.addEventListener("click", function (event) {
    const preset = event.target.closest("button[data-preset-seconds]");
    if (!preset) return;
    const form = preset.closest("form");
    const since = form.querySelector("input[name=since]");
    const until = form.querySelector("input[name=until]");
    since.value = utcIso(new Date(Date.now() - Number(preset.dataset.presetSeconds) * 1000));
    until.value = "";
    form.querySelectorAll("input.utc-picker").forEach(function (picker) {
      picker.value = localValue(picker.previousElementSibling.value);
    });
    form.requestSubmit();
  });

  // A poll does not replace the table while the user has text selected in it (to copy an address, say);
  // the next poll after the selection is gone brings it up to date.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const source = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!source || !source.hasAttribute("data-poll")) return;
    const selection = window.getSelection();
    if (selection && !selection.isCollapsed && selection.toString().trim() &&
        event.detail.target.contains(selection.anchorNode)) {
      event.detail.shouldSwap = false;
    }
  });

  // The Events / Summary / Review tabs: Left and Right (Home, End) move the focus along them, round at the ends;
  // Enter (the link's own key) or Space opens the focused one. Tab leaves them from the chosen one (roving tabindex).
  const MOVES = { ArrowRight: 1, ArrowLeft: -1, Home: "first", End: "last" };
  document.addEventListener("keydown", function (event) {
    const tab = event.target.closest && event.target.closest("[role=tablist] > [role=tab]");
    if (!tab || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === " ") {
      event.preventDefault();  // not a scroll: a link takes Space as a click here
      tab.click();
      return;
    }
    const move = MOVES[event.key];
    if (move === undefined) return;
    event.preventDefault();
    const tabs = Array.from(tab.parentElement.querySelectorAll(":scope > [role=tab]"));
    const at = tabs.indexOf(tab);
    const next = move === "first" ? 0 : move === "last" ? tabs.length - 1 : (at + move + tabs.length) % tabs.length;
    tabs[next].focus();
  });

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:load", function (event) { enhance(event.detail.elt); });
})();
