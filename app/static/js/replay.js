// Session page: the asciinema player with speed and idle-time controls, on one timeline with the command list.
// The list, the player's markers and its clock all count playback time: with the idle time limit on, every pause
// longer than the limit counts as the limit (the player's own arithmetic), so "00:05" in the list is "00:05" on the
// player's clock and its marker. The commands and #t=SECONDS (a moment of the recording, as the command search links
// it) seek it. replay_keys.js adds the keys; both share root.replay.
(function () {
  "use strict";

  const root = document.getElementById("replay");
  const screen = root && root.querySelector(".replay-screen");
  if (!screen || !window.AsciinemaPlayer) return;
  const status = root.querySelector(".replay-status");
  const summary = root.querySelector(".replay-timeline");
  const speed = root.querySelector('select[name="speed"]');
  const idle = root.querySelector('select[name="idle"]');
  const commands = Array.from(root.querySelectorAll(".commands a[data-seek]"), (link) => ({
    link: link, t: Number(link.dataset.seek), text: link.querySelector("code").textContent, at: 0,
  }));
  let cast = null;  // the recording, fetched once: recreating the player must not fetch (and audit) it again
  let times = [];  // every event's time in the recording, for the idle-time arithmetic below
  let others = [];  // the recording's markers that are no command (the size cap's "recording stopped")
  let player = null;
  let limit = 0;  // the idle time limit the current player was made with (0: off)
  let playing = false;
  let pending = null;  // a seek the player has not finished: { at, until }; its clock still says the old moment

  // A moment of the recording as a moment of playback: each gap between events longer than the limit counts as
  // the limit (asciinema-player's time limiter, event by event from 0).
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

  // The reverse: a moment of playback as recording time.
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

  // Seconds as the player's clock writes them: 01:05, 1:02:03.
  function clock(seconds) {
    const s = Math.floor(Math.max(0, seconds));
    const two = (n) => String(n).padStart(2, "0");
    const hours = Math.floor(s / 3600);
    return (hours ? hours + ":" : "") + two(Math.floor(s / 60) % 60) + ":" + two(s % 60);
  }

  // Put the commands on the playback timeline and say how it relates to the recording's.
  function timeline() {
    for (const command of commands) {
      command.at = toPlayer(command.t);
      const offset = command.link.querySelector(".offset");
      offset.textContent = clock(command.at);
      offset.title = limit && command.at < command.t - 0.5
        ? clock(command.t) + " into the recording; shorter pauses before it make it " + clock(command.at)
        : clock(command.t) + " into the recording";
    }
    const whole = times.length ? times[times.length - 1] : 0, played = toPlayer(whole);
    if (!limit) summary.textContent = "Pauses play at full length: " + clock(whole) + ".";
    else if (played < whole - 0.5) {
      summary.textContent = "Pauses over " + limit + " s shortened: " + clock(whole) + " of recording plays in " +
        clock(played) + ".";
    } else summary.textContent = "No pause over " + limit + " s: it plays as recorded (" + clock(whole) + ").";
  }

  // The player's markers: the listed commands where the list puts them, and the recording's other markers.
  function markers() {
    return commands.map((c) => [c.at, c.text]).concat(others.map(([t, label]) => [toPlayer(t), label]))
      .sort((a, b) => a[0] - b[0]);
  }

  // The player's palette of the page's theme (terminal.css: asciinema-player-theme-gatehouse-light / -dark).
  function theme() {
    return "gatehouse-" + (window.GatehouseTheme ? window.GatehouseTheme.current() : "dark");
  }

  // Make the player at a moment of the recording, playing or paused.
  function create(at, autoPlay) {
    if (player) player.dispose();
    pending = null;
    limit = Number(idle.value) || 0;
    timeline();
    player = window.AsciinemaPlayer.create({ data: cast }, screen, {
      speed: Number(speed.value),
      idleTimeLimit: limit || undefined,
      markers: markers(),
      startAt: at,  // a recording time: the player applies the idle limit to it itself
      autoPlay: autoPlay,
      preload: true,
      // As wide as the box; the box (replay.css) is as wide as its column, or as the window's height allows.
      fit: "width",
      theme: theme(),
    });
    playing = autoPlay;
    // A paused player shows its start screen, not the startAt moment: seeking shows that moment.
    if (!autoPlay && at > 0) seek(at);
    player.addEventListener("play", () => { playing = true; });
    player.addEventListener("pause", () => { playing = false; });
    player.addEventListener("ended", () => { playing = false; });
    player.addEventListener("seeked", () => { pending = null; });
    player.addEventListener("playing", () => { pending = null; });  // a seek while playing ends so
    document.dispatchEvent(new CustomEvent("gatehouse:replay", { detail: { at: toPlayer(at) } }));
  }

  // Make the player again with new options, at the same moment of the recording.
  function recreate() {
    if (!player) return;
    create(fromPlayer(root.replay.time()), playing);  // a jump still under way counts
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

  // Read the recording's event times and the markers that are no listed command.
  function read(text) {
    const listed = new Set(commands.map((c) => c.t));
    for (const line of text.split("\n")) {
      if (line.charAt(0) !== "[") continue;
      const time = parseFloat(line.slice(1));
      times.push(time);
      if (line.includes('"m"') && !listed.has(time)) {
        const event = JSON.parse(line);
        if (event[1] === "m") others.push([event[0], event[2]]);
      }
    }
  }

  // What replay_keys.js (and the page's tests) use: the player's clock, the commands on it, and the controls.
  root.replay = {
    commands: commands,
    clock: clock,
    ready: () => player !== null,
    player: () => player,
    time: () => {
      if (pending && performance.now() < pending.until) return pending.at;  // two quick jumps: the second from the first
      pending = null;
      return player ? player.getCurrentTime() || 0 : 0;
    },
    duration: () => (player ? player.getDuration() || 0 : 0),
    playing: () => playing,
    seekTo: (p) => {
      if (!player) return;
      pending = { at: Math.max(0, p), until: performance.now() + 1000 };
      player.seek(pending.at);
    },
    toggle: () => { if (player) (playing ? player.pause() : player.play()); },
    fullscreen: () => { const button = screen.querySelector(".ap-fullscreen-button"); if (button) button.click(); },
  };

  // The box takes the shape of the recording's screen (replay.css: --replay-aspect), which a resize in it changes.
  new ResizeObserver(() => {
    const term = screen.querySelector(".ap-term");
    if (!term || !term.offsetHeight) return;
    const aspect = (term.offsetWidth / term.offsetHeight).toFixed(3);
    if (screen.style.getPropertyValue("--replay-aspect") !== aspect) screen.style.setProperty("--replay-aspect", aspect);
  }).observe(screen);
  root.querySelector(".replay-fullscreen").addEventListener("click", root.replay.fullscreen);
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
      read(text);
      create(hashTime() || 0, false);
      status.textContent = "";
    })
    .catch((error) => { status.textContent = "The recording cannot be played: " + error.message; });
})();
