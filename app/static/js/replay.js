// Session page: the asciinema player with speed and idle-time controls; the commands and #t=SECONDS seek it.
(function () {
  "use strict";

  const root = document.getElementById("replay");
  const screen = root && root.querySelector(".replay-screen");
  if (!screen || !window.AsciinemaPlayer) return;
  const status = root.querySelector(".replay-status");
  const speed = root.querySelector('select[name="speed"]');
  const idle = root.querySelector('select[name="idle"]');
  const narrow = window.matchMedia("(max-width: 700px)");  // the stylesheet's phone width
  let cast = null;  // the recording, fetched once: recreating the player must not fetch (and audit) it again
  let times = [];  // every event's time in the recording, for the idle-time arithmetic below
  let player = null;
  let limit = 0;  // the idle time limit the current player was made with (0: off)
  let playing = false;

  // The player shortens every pause longer than the idle limit to the limit, so its clock runs
  // behind the recording's; commands and #t= are recording times. Same arithmetic as the player's.
  function toPlayer(t) {
    if (!limit) return t;
    let previous = 0, shift = 0;
    for (const time of times) {
      if (time > t) break;
      shift += Math.max(0, time - previous - limit);
      previous = time;
    }
    return t - shift - Math.max(0, t - previous - limit);
  }

  // The reverse: a moment of the player's clock as recording time.
  function fromPlayer(p) {
    if (!limit) return p;
    let previous = 0, shift = 0;
    for (const time of times) {
      const gap = Math.max(0, time - previous - limit);
      if (time - shift - gap > p) break;
      shift += gap;
      previous = time;
    }
    return p + shift;
  }

  // The player's palette of the page's theme (terminal.css: asciinema-player-theme-gatehouse-light / -dark).
  function theme() {
    return "gatehouse-" + (window.GatehouseTheme ? window.GatehouseTheme.current() : "dark");
  }

  // Make the player at a moment of the recording, playing or paused.
  function create(at, autoPlay) {
    if (player) player.dispose();
    limit = Number(idle.value) || 0;
    player = window.AsciinemaPlayer.create({ data: cast }, screen, {
      speed: Number(speed.value),
      idleTimeLimit: limit || undefined,
      startAt: at,  // a recording time: the player applies the idle limit to it itself
      autoPlay: autoPlay,
      preload: true,
      // The whole screen inside the box the stylesheet gives it; a phone's narrow box scrolls instead.
      fit: narrow.matches ? "width" : "both",
      terminalFontSize: "small",
      theme: theme(),
    });
    playing = autoPlay;
    // A paused player shows its start screen, not the startAt moment: seeking shows that moment.
    if (!autoPlay && at > 0) seek(at);
    player.addEventListener("play", () => { playing = true; });
    player.addEventListener("pause", () => { playing = false; });
    player.addEventListener("ended", () => { playing = false; });
  }

  // Make the player again with new options, at the same moment of the recording.
  function recreate() {
    if (!player) return;
    create(fromPlayer(player.getCurrentTime() || 0), playing);
  }

  // Show a moment of the recording (seconds, recording time).
  function seek(t) {
    if (player && Number.isFinite(t)) player.seek(toPlayer(Math.max(0, t)));
  }

  // Return the moment the address names (#t=SECONDS), or null.
  function hashTime() {
    const match = /^#t=([0-9.]+)$/.exec(location.hash);
    return match ? Number(match[1]) : null;
  }

  speed.addEventListener("change", recreate);
  document.addEventListener("gatehouse:theme", recreate);  // light page, light player
  idle.addEventListener("change", recreate);
  root.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-seek]");
    if (!link) return;
    event.preventDefault();
    history.replaceState(null, "", "#t=" + link.dataset.seek);  // the address names the moment, to share it
    seek(Number(link.dataset.seek));
  });
  window.addEventListener("hashchange", () => seek(hashTime()));

  fetch(root.dataset.cast, { credentials: "same-origin" })
    .then((response) => response.text().then((text) => {
      if (!response.ok) throw new Error(text.trim() || response.statusText);
      return text;
    }))
    .then((text) => {
      cast = text;
      for (const line of text.split("\n")) {
        if (line.charAt(0) === "[") times.push(parseFloat(line.slice(1)));
      }
      create(hashTime() || 0, false);
      status.textContent = "";
    })
    .catch((error) => { status.textContent = "The recording cannot be played: " + error.message; });
})();
