// Watching a live terminal, read-only: the server sends the session's size, its screen, then its output.
// Stop watching closes the socket (the trail records session.watch_ended); Watch again opens a new one. The
// page's state is a class on #watch: is-live, is-stopped or is-ended (static/js/watch_side.js sets that one).
(function () {
  "use strict";

  const root = document.getElementById("watch");
  if (!root || !window.Terminal) return;
  const status = root.querySelector(".watch-status");
  const screen = root.querySelector(".watch-screen");
  const stoppedText = root.querySelector(".watch-stopped-text");
  const stoppedWords = stoppedText.textContent;  // what the box says after Stop watching (the status says the rest)

  // The text size chosen on the terminal page (static/js/terminal.js), else 14 px.
  function storedFontSize() {
    let size = null;
    try { size = Number(localStorage.getItem("gatehouse-term-font")); } catch (err) { /* storage refused */ }
    return size >= 10 && size <= 24 ? size : 14;
  }
  const preferred = storedFontSize();
  const term = new window.Terminal({
    disableStdin: true, cursorBlink: false, scrollback: 5000, fontSize: preferred,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    theme: window.GatehouseTheme ? window.GatehouseTheme.terminalTheme() : undefined,
  });
  document.addEventListener("gatehouse:theme", () => { term.options.theme = window.GatehouseTheme.terminalTheme(); });

  // The screen is put on the page once its first picture is written (or a second after the size, when nothing
  // came), so it never shows empty while the session's screen is on its way.
  let shown = false;
  function show() {
    if (shown) return;
    shown = true;
    term.open(screen);
    requestAnimationFrame(fit);
  }

  // The session's columns fit the screen's width (a phone, a wide session) down to 8 px; below that it scrolls.
  function fit() {
    if (!shown) return;
    const drawn = screen.querySelector(".xterm-screen");
    if (!drawn || !drawn.offsetWidth) return;
    const room = screen.clientWidth - 10;
    const size = Math.max(8, Math.min(preferred, Math.floor(term.options.fontSize * room / drawn.offsetWidth)));
    if (size !== term.options.fontSize) term.options.fontSize = size;
  }
  window.addEventListener("resize", () => requestAnimationFrame(fit));

  function say(text) { status.textContent = text; }
  function setState(state) {
    if (root.classList.contains("is-ended")) return;  // an ended session stays ended
    root.classList.remove("is-live", "is-stopped");
    root.classList.add(state);
  }

  let socket = null;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
    new URL(root.dataset.wsUrl, location.href).pathname;

  // Show a message that ends this watch: the session ended, or the server stopped the watch (then it may start again).
  function closedWith(message) {
    show();
    say(message);
    term.write("\r\n\x1b[33m" + message + "\x1b[0m\r\n");
    if (message === root.dataset.endedText) {
      root.dispatchEvent(new CustomEvent("gatehouse:watch-ended"));
    } else {
      stoppedText.textContent = "";  // the status line says why
      setState("is-stopped");
    }
  }

  function connect() {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    socket = ws;
    let told = false;  // the server said why it ends: the close that follows needs no words of its own
    ws.onopen = () => { if (ws === socket) say("Live."); };
    ws.onmessage = (event) => {
      if (ws !== socket) return;
      if (typeof event.data !== "string") {
        term.write(new Uint8Array(event.data), show);
        return;
      }
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      if (message.type === "size") {
        term.resize(message.cols, message.rows);
        if (shown) requestAnimationFrame(fit); else setTimeout(show, 1000);
      } else if (message.type === "error" || message.type === "closed") {
        told = true;
        closedWith(message.message);
      }
    };
    ws.onclose = () => {
      if (ws === socket && !told) closedWith("Disconnected: watching stopped.");
    };
  }

  function stop() {
    const ws = socket;
    socket = null;
    if (ws) ws.close(1000);
    say("You stopped watching.");
    stoppedText.textContent = stoppedWords;
    setState("is-stopped");
    root.querySelector(".watch-again").focus();
  }

  function again() {
    if (root.classList.contains("is-ended")) return;
    term.reset();
    say("Connecting…");
    setState("is-live");
    connect();
    root.dispatchEvent(new CustomEvent("gatehouse:watch-again"));
    root.querySelector(".watch-stop").focus();
  }

  root.querySelector(".watch-stop").addEventListener("click", stop);
  root.querySelector(".watch-again").addEventListener("click", again);
  window.addEventListener("beforeunload", () => { if (socket) socket.close(1001); });
  if (root.classList.contains("is-ended")) {
    show();
    term.write("\x1b[33m" + status.textContent + " Its replay is on the session page.\x1b[0m\r\n");
  } else {
    connect();
  }
})();
