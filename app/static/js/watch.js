// Watching a live terminal, read-only: the server sends the session's size, its screen, then its output.
(function () {
  "use strict";

  const root = document.getElementById("watch");
  if (!root || !window.Terminal) return;
  const status = root.querySelector(".watch-status");

  // The text size chosen on the terminal page (static/js/terminal.js), else 14 px.
  function storedFontSize() {
    let size = null;
    try { size = Number(localStorage.getItem("gatehouse-term-font")); } catch (err) { /* storage refused */ }
    return size >= 10 && size <= 24 ? size : 14;
  }
  const term = new window.Terminal({
    disableStdin: true, cursorBlink: false, scrollback: 5000, fontSize: storedFontSize(),
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    theme: window.GatehouseTheme ? window.GatehouseTheme.terminalTheme() : undefined,
  });
  document.addEventListener("gatehouse:theme", () => { term.options.theme = window.GatehouseTheme.terminalTheme(); });
  term.open(root.querySelector(".watch-screen"));

  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
    new URL(root.dataset.wsUrl, location.href).pathname;
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  let ended = false;
  socket.onopen = () => { status.textContent = "Live."; };
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") {
      term.write(new Uint8Array(event.data));
      return;
    }
    let message;
    try { message = JSON.parse(event.data); } catch (err) { return; }
    if (message.type === "size") {
      term.resize(message.cols, message.rows);
    } else if (message.type === "error" || message.type === "closed") {
      ended = true;
      status.textContent = message.message;
      term.write("\r\n\x1b[33m" + message.message + "\x1b[0m\r\n");
    }
  };
  socket.onclose = () => { if (!ended) status.textContent = "Disconnected."; };
  window.addEventListener("beforeunload", () => socket.close(1001));
})();
