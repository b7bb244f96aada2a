// The side of the watch page: the duration ticks, the commands list keeps its scroll across polls, Terminate asks
// (with the reason typed) in the app's confirmation dialog, and an ended session takes the actions away.
(function () {
  "use strict";

  const root = document.getElementById("watch");
  if (!root) return;
  const status = root.querySelector(".watch-status");
  const form = root.querySelector(".watch-terminate");
  const errors = root.querySelector("#terminate-error");

  // Say a duration as the server's `duration` filter does: 42 s, 3 min 05 s, 2 h 07 min.
  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const hours = Math.floor(seconds / 3600);
    const minutes = Math.floor((seconds % 3600) / 60);
    const rest = String(seconds % 60).padStart(2, "0");
    if (hours) return hours + " h " + String(minutes).padStart(2, "0") + " min";
    return minutes ? minutes + " min " + rest + " s" : seconds + " s";
  }

  function tick() {
    const cell = root.querySelector(".watch-duration[data-since]");
    if (!cell || cell.dataset.until) return;
    cell.textContent = duration((Date.now() - Date.parse(cell.dataset.since)) / 1000) + " so far";
  }
  setInterval(tick, 1000);

  function ended() {
    if (root.classList.contains("is-ended")) return;
    const focused = root.querySelector(".watch-actions").contains(document.activeElement);
    root.classList.remove("is-live", "is-stopped");
    root.classList.add("is-ended");
    form.querySelectorAll("input, button").forEach((element) => { element.disabled = true; });
    status.textContent = root.dataset.endedText || "This session has ended.";
    if (focused) root.querySelector(".watch-ended a").focus();
  }

  function refresh() {
    const side = document.getElementById("watch-commands");
    if (side && side.hasAttribute("data-poll")) htmx.trigger(side, "refresh");
  }

  // The socket said the session ended: the facts (its end, how) come with the next poll.
  root.addEventListener("gatehouse:watch-ended", () => { ended(); refresh(); });
  root.addEventListener("gatehouse:watch-again", refresh);

  // Stopped watching: no polls either, until Watch again.
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (root.classList.contains("is-stopped") && event.detail.elt.id === "watch-commands") event.preventDefault();
  });

  // A poll replaces the list: whoever scrolled down keeps reading where they were (new commands come on top).
  let kept = null;
  document.addEventListener("htmx:beforeSwap", (event) => {
    const side = event.detail.target;
    if (side.id === "watch-commands") kept = { top: side.scrollTop, height: side.scrollHeight };
  });
  document.addEventListener("htmx:afterSettle", () => {
    const side = document.getElementById("watch-commands");
    if (side && kept && kept.top > 0) side.scrollTop = kept.top + side.scrollHeight - kept.height;
    kept = null;
    if (document.querySelector("#watch-facts[data-ended]")) ended();
    tick();
  });

  // Terminate: the confirmation names the session and repeats the reason; yes sends the form (hx-trigger="confirmed").
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = form.elements.reason.value.trim();
    const question = form.dataset.question + (reason ? " Reason: “" + reason + "”." : " No reason given.");
    const button = form.querySelector("button[type=submit]");
    errors.replaceChildren();
    window.GatehouseConfirm.ask(question, button, () => htmx.trigger(form, "confirmed"), "Terminate");
  });

  function refused(text) {
    const line = document.createElement("p");
    line.className = "flash error";
    line.setAttribute("role", "alert");
    line.textContent = text;
    errors.replaceChildren(line);
  }

  form.addEventListener("htmx:afterRequest", (event) => {
    const code = event.detail.xhr.status;
    if (code === 204) {
      status.textContent = "Terminating: the session closes within a second.";
    } else if (code === 404) {
      refused("This session has already ended.");
      refresh();
    } else if (code !== 422) {  // 422 brings its own words (terminals/_watch_error.html)
      refused("The session could not be terminated (the server answered " + code + "); try again.");
    }
  });

  if (document.querySelector("#watch-facts[data-ended]")) ended();
})();
