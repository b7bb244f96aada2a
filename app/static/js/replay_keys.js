// Session page: keys for the player (space, ←/→, [ and ], n and p, f), said in its status line, and the command
// playback has reached marked in the list. The keys work wherever the page or the player has focus, never while
// a form control does (typing there stays typing). replay.js owns the player; this reads it through root.replay.
(function () {
  "use strict";

  const root = document.getElementById("replay");
  const status = root && root.querySelector(".replay-status");
  if (!status) return;
  const STEP = 5;  // seconds that ← and → move
  const EPSILON = 0.001;  // seconds: the player's clock after a seek to a command is that command's moment
  const GRACE = 1;  // seconds past a command's start in which [ goes to the one before, as media players do
  const CONTROLS = "input, select, textarea, button, summary, [contenteditable], [contenteditable=''], dialog";
  let current = -1;

  function replay() { return root.replay && root.replay.ready() ? root.replay : null; }

  // Return the index of the last command playback has reached at time (-1 before the first). Standing on the
  // marked command counts as that one, even when the next was typed in the same millisecond.
  function reached(time) {
    const commands = replay().commands;
    if (commands[current] && Math.abs(commands[current].at - time) < EPSILON) return current;
    if (time <= EPSILON) return -1;  // the very start is before every command, even one typed as the session began
    let index = -1;
    for (let i = 0; i < commands.length && commands[i].at <= time + EPSILON; i++) index = i;
    return index;
  }

  // Mark a command (by its index; -1: none) in the list as the one playback has reached; keep it in view there.
  function mark(index) {
    if (index === current) return;
    const commands = replay().commands;
    if (commands[current]) commands[current].link.removeAttribute("aria-current");
    current = index;
    if (!commands[index]) return;
    const link = commands[index].link;
    link.setAttribute("aria-current", "true");
    const list = link.closest(".commands");
    if (list.scrollHeight > list.clientHeight) {  // the list scrolls on its own: keep the mark inside it
      const item = link.parentElement;
      if (item.offsetTop < list.scrollTop || item.offsetTop + item.offsetHeight > list.scrollTop + list.clientHeight) {
        list.scrollTop = item.offsetTop - list.clientHeight / 2;
      }
    }
  }

  function say(text) { status.textContent = text; }

  // Seek to the next (+1) or the previous (-1) command and say which it is.
  function jump(direction) {
    const { commands, time, clock } = replay();
    const now = time(), here = reached(now);
    // Back from a moment well past a command goes to that command's start; from its start, to the one before.
    const index = direction > 0 ? here + 1 : (here >= 0 && now - commands[here].at > GRACE ? here : here - 1);
    if (index < 0 || index >= commands.length) {
      say(commands.length ? "No command " + (direction > 0 ? "after " : "before ") + clock(now) + "."
        : "No commands were read from this session.");
      return;
    }
    const command = commands[index];
    replay().seekTo(command.at);
    say("command " + (index + 1) + " of " + commands.length + ": " + command.text + " at " + clock(command.at));
    mark(index);
  }

  // Move the clock by seconds and say where it is.
  function step(seconds) {
    const target = Math.min(Math.max(0, replay().time() + seconds), replay().duration());
    replay().seekTo(target);
    say("at " + replay().clock(target));
    mark(reached(target));
  }

  const ACTIONS = {
    " ": () => { replay().toggle(); },
    ArrowLeft: () => step(-STEP),
    ArrowRight: () => step(STEP),
    "[": () => jump(-1),
    "]": () => jump(1),
    p: () => jump(-1),
    n: () => jump(1),
    f: () => replay().fullscreen(),
  };

  // Captured before the player's own key handler: one key, one action (not the player's as well).
  window.addEventListener("keydown", (event) => {
    const action = ACTIONS[event.key];
    if (!action || !replay() || event.ctrlKey || event.altKey || event.metaKey || event.defaultPrevented) return;
    if (event.target.closest && event.target.closest(CONTROLS)) return;
    if (document.querySelector("dialog[open]")) return;  // a dialog over the page has the keys
    event.preventDefault();
    event.stopPropagation();
    action();
  }, true);

  document.addEventListener("gatehouse:replay", (event) => mark(reached(event.detail.at)));  // new player, same moment
  root.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-seek]");
    if (link && replay()) mark(replay().commands.findIndex((c) => c.link === link));
  });
  window.setInterval(() => { if (replay() && replay().playing()) mark(reached(replay().time())); }, 250);
})();
