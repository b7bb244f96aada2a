// Times: the server writes <time datetime="UTC ISO">UTC text</time> (the text says UTC or ends in Z); here they
// read in the browser's own time zone with its offset ("2026-11-25 10:31:19 +01:00"), recent ones get "3 min ago"
// beside them, and the UTC text is on hover. Without JavaScript the UTC text stays as it is. One rule for every
// page: a value carries its zone (an offset, Z or UTC), or its label names the zone (zoneLabel below).
(function () {
  "use strict";

  const RECENT_MS = 24 * 3600 * 1000;  // older than a day: the date says enough
  // The UTC texts the server writes: a date with minutes or seconds, or a time of day alone. Other texts
  // (a weekday in AUDIT_TIMEZONE on the review, with its offset and zone) are already meant for people and stay.
  const DATE_TIME = /^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?/;
  const TIME_ONLY = /^\d\d:\d\d:\d\d/;

  function two(n) { return String(n).padStart(2, "0"); }

  function offset(date) {
    const minutes = -date.getTimezoneOffset();
    const sign = minutes < 0 ? "-" : "+";
    return sign + two(Math.floor(Math.abs(minutes) / 60)) + ":" + two(Math.abs(minutes) % 60);
  }

  function clock(date, seconds) {
    return two(date.getHours()) + ":" + two(date.getMinutes()) + (seconds ? ":" + two(date.getSeconds()) : "");
  }

  function day(date) {
    return date.getFullYear() + "-" + two(date.getMonth() + 1) + "-" + two(date.getDate());
  }

  function ago(ms) {
    const seconds = Math.max(0, Math.round(ms / 1000));
    if (seconds < 45) return "just now";
    if (seconds < 3600) return Math.max(1, Math.round(seconds / 60)) + " min ago";
    return Math.floor(seconds / 3600) + " h ago";
  }

  function localise(element) {
    const utcText = element.dataset.utc || element.textContent.trim();
    const date = new Date(element.getAttribute("datetime"));
    const dateTime = DATE_TIME.exec(utcText);
    if (isNaN(date) || element.dataset.zone || (!dateTime && !TIME_ONLY.test(utcText))) return;
    element.dataset.utc = utcText;
    element.title = date.toISOString().slice(0, 19).replace("T", " ") + " UTC";
    const local = (dateTime ? day(date) + " " : "") + clock(date, !dateTime || dateTime[1] !== undefined) + " " +
      offset(date);
    const age = Date.now() - date.getTime();
    if (element.classList.contains("short")) {  // tight spaces (the device list): "3 min ago", else the day
      element.title = local + " (" + element.title + ")";
      element.textContent = age >= 0 && age <= RECENT_MS ? ago(age) : day(date);
      return;
    }
    element.textContent = local;
    let note = element.nextElementSibling;
    if (!note || !note.classList.contains("ago")) {
      if (age < 0 || age > RECENT_MS || !dateTime) return;
      note = document.createElement("span");
      note.className = "ago";
      element.after(note);
    }
    note.textContent = age >= 0 && age <= RECENT_MS ? ago(age) : "";
  }

  // Name this browser's zone for a label: "Europe/Berlin" (its offset changes over the year: a value under the
  // label may be in summer time), or the offset of now where the browser names no zone.
  function zoneLabel() {
    let name = "";
    try { name = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (err) { /* an old browser */ }
    return name || "UTC" + offset(new Date());
  }
  window.GatehouseTimes = { zoneLabel: zoneLabel };

  function localiseAll(root) {
    root.querySelectorAll("time[datetime]").forEach(localise);
  }

  document.addEventListener("DOMContentLoaded", function () { localiseAll(document); });
  document.addEventListener("htmx:load", function (event) { localiseAll(event.detail.elt); });
  setInterval(function () { localiseAll(document); }, 30000);  // "3 min ago" moves on
})();
