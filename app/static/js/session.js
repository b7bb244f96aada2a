// The log-in's clock: background polls say they are polls (not activity, for the idle timeout), and the
// badge in the header shows the time left, offers "Stay logged in" near the end and leaves at the end.
(function () {
  "use strict";

  const POLL = "X-Gatehouse-Poll";

  // An element that polls by itself (data-poll) is not the user: its requests do not keep the log-in alive.
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt && event.detail.elt.hasAttribute("data-poll")) event.detail.headers[POLL] = "1";
  });

  const badge = document.getElementById("idle-badge");
  if (!badge) return;
  const text = badge.querySelector(".left");
  const stay = badge.querySelector("button.stay");
  const warnMs = Number(badge.dataset.warn) * 1000;
  const SYNC_MS = 30000; // another tab or a terminal may have been active meanwhile: ask the server this often
  let deadline = Date.now() + Number(badge.dataset.left) * 1000;
  let syncedAt = Date.now();
  let asking = false;

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function words(ms) {
    const seconds = Math.max(0, Math.ceil(ms / 1000));
    if (ms <= warnMs) return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
    if (seconds >= 5400) return Math.round(seconds / 3600) + " h";
    return Math.ceil(seconds / 60) + " min";
  }

  function expire() {
    const here = location.pathname + location.search;
    location.assign(badge.dataset.login + "?expired=1&next=" + encodeURIComponent(here));
  }

  function answer(response) {
    if (!response.ok || response.type === "opaqueredirect") return { left: 0 };
    return response.json();
  }

  function learn(reply) {
    syncedAt = Date.now();
    deadline = Date.now() + reply.left * 1000;
    if (reply.left <= 0) expire();
    render();
  }

  function ask() {
    if (asking) return;
    asking = true;
    fetch(badge.dataset.status, { headers: { [POLL]: "1" }, cache: "no-store", redirect: "manual" })
      .then(answer).then(learn).catch(function () {}).finally(function () { asking = false; });
  }

  function render() {
    const left = deadline - Date.now();
    const ending = left <= warnMs;
    text.textContent = words(left);
    badge.classList.toggle("ending", ending);
    stay.hidden = !ending;
  }

  stay.addEventListener("click", function () {
    fetch(badge.dataset.extend, { method: "POST", headers: { "X-CSRFToken": csrfToken() }, redirect: "manual" })
      .then(answer).then(learn).catch(function () {});
  });

  setInterval(function () {
    const left = deadline - Date.now();
    // Before warning or leaving, and every SYNC_MS, ask: activity elsewhere may have moved the end.
    if (Date.now() - syncedAt > SYNC_MS || (left <= warnMs && stay.hidden) || left <= 0) ask();
    render();
  }, 1000);
  render();
})();
