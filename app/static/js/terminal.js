// Terminal tabs: one xterm.js per tab, bytes over a websocket (protocol: docs/protocol.md).
(function () {
  "use strict";

  const root = document.getElementById("terminals");
  if (!root || !window.Terminal) return;
  const tabbar = root.querySelector(".tabbar");
  const panels = root.querySelector(".panels");
  const encoder = new TextEncoder();
  const PASTE_CHUNK = 32 * 1024; // large pastes travel as several frames, well under the server's limit
  const publicOrigin = root.dataset.publicOrigin; // the only Origin the server accepts for terminals

  // Same origin as the page, whatever scheme and host the server thought it had.
  function wsUrl(url) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + new URL(url, location.href).pathname;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  class Tab {
    constructor(name, path) {
      this.path = path;
      this.buildDom(name);
      this.setUpTerminal();
      this.wireListeners();
    }

    buildDom(name) {
      this.tab = element("div", "tab");
      this.tab.setAttribute("role", "tab");
      this.tab.tabIndex = 0;
      this.tab.append(element("span", "tab-name", name));
      this.status = element("span", "tab-status");
      this.reconnectButton = element("button", "reconnect", "↻");
      this.reconnectButton.type = "button";
      this.reconnectButton.title = "Reconnect";
      this.reconnectButton.hidden = true;
      this.closeButton = element("button", "tab-close", "×");
      this.closeButton.type = "button";
      this.closeButton.title = "Close this terminal";
      this.closeButton.setAttribute("aria-label", "Close terminal " + name);
      this.tab.append(this.status, this.reconnectButton, this.closeButton);
      this.panel = element("div", "terminal-panel");
      this.panel.setAttribute("role", "tabpanel");
      this.watched = element("div", "watched-notice");
      this.watched.setAttribute("role", "status");
      this.watched.hidden = true;
      this.panel.append(this.watched);
      tabbar.append(this.tab);
      panels.append(this.panel);
    }

    setUpTerminal() {
      this.term = new window.Terminal({
        cursorBlink: true, scrollback: 5000, fontSize: 14,
        fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
        theme: window.GatehouseTheme ? window.GatehouseTheme.terminalTheme() : undefined,
      });
      this.fit = new window.FitAddon.FitAddon();
      this.term.loadAddon(this.fit);
      this.term.open(this.panel);
      this.term.attachCustomKeyEventHandler((event) => this.copyKey(event));
    }

    wireListeners() {
      this.disposables = [
        this.term.onData((data) => this.send(encoder.encode(data))),
        this.term.onBinary((data) => this.send(Uint8Array.from(data, (c) => c.charCodeAt(0)))),
        this.term.onResize(() => this.sendSize()),
      ];
      this.resizeObserver = new ResizeObserver(() => { if (!this.panel.hidden) this.fit.fit(); });
      this.resizeObserver.observe(this.panel);
      this.onTabClick = (event) => {
        if (event.target === this.closeButton) this.close();
        else if (event.target === this.reconnectButton) this.connect();
        else activate(this);
      };
      this.tab.addEventListener("click", this.onTabClick);
    }

    copyKey(event) {
      // Ctrl+Shift+C copies the selection; plain Ctrl+C stays an interrupt for the remote program.
      if (event.type === "keydown" && event.ctrlKey && event.shiftKey && event.code === "KeyC") {
        if (navigator.clipboard && this.term.hasSelection()) navigator.clipboard.writeText(this.term.getSelection());
        return false;
      }
      return true;
    }

    connect() {
      this.setStatus("connecting");
      this.reconnectButton.hidden = true;
      this.closedByServer = false;
      this.opened = false;
      // The terminal's size from the start: the remote PTY and the recording begin with it.
      const socket = new WebSocket(wsUrl(this.path) + "?cols=" + this.term.cols + "&rows=" + this.term.rows);
      socket.binaryType = "arraybuffer";
      socket.onopen = () => { this.opened = true; this.setStatus(""); this.sendSize(); this.term.focus(); };
      socket.onmessage = (event) => this.receive(event.data);
      socket.onclose = () => this.ended(socket);
      this.socket = socket;
    }

    receive(data) {
      if (typeof data !== "string") {
        this.term.write(new Uint8Array(data));
        return;
      }
      let message;
      try { message = JSON.parse(data); } catch (err) { return; }
      if (message.type === "error") {
        this.term.write("\r\n\x1b[1;31m" + message.message + "\x1b[0m\r\n");
        this.closedByServer = true;
      } else if (message.type === "closed") {
        this.term.write("\r\n\x1b[33m" + message.message + "\x1b[0m\r\n");
        this.closedByServer = true;
      } else if (message.type === "connected") {
        this.term.write("\x1b[2mHost key " + message.host_key_type + " " + message.host_key + "\x1b[0m\r\n");
      } else if (message.type === "watched") {
        // Somebody (an admin) sees this session as it happens: the user must know.
        this.watched.textContent = message.message || "";
        this.watched.hidden = !message.message;
        this.tab.classList.toggle("is-watched", !!message.message);
      } else if (message.type === "status") {
        this.term.write("\x1b[2m" + message.message + "\x1b[0m\r\n");
      }
    }

    ended(socket) {
      if (socket !== this.socket) return;
      this.socket = null;
      // A refused upgrade (403) reaches the page with no text: say why when the origins disagree.
      const refused = !this.opened && !this.closedByServer && publicOrigin && publicOrigin !== location.origin;
      if (refused) {
        this.term.write("\r\n\x1b[1;31mGatehouse refused this terminal: the page is open at " + location.origin +
          " but the server expects " + publicOrigin + ". Set PUBLIC_URL to the address you open Gatehouse at" +
          " (or let the reverse proxy pass the Host header on; see the README).\x1b[0m\r\n");
      }
      this.setStatus(refused ? "refused" : this.closedByServer ? "closed" : "disconnected");
      this.reconnectButton.hidden = false;
    }

    send(bytes) {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
      for (let start = 0; start < bytes.length; start += PASTE_CHUNK) {
        this.socket.send(bytes.subarray(start, start + PASTE_CHUNK));
      }
    }

    sendSize() {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify({ type: "resize", cols: this.term.cols, rows: this.term.rows }));
      }
    }

    setStatus(text) {
      this.status.textContent = text;
    }

    close() {
      if (this.socket) {
        this.socket.onclose = null;
        this.socket.close(1000, "tab closed");
      }
      this.disposables.forEach((d) => d.dispose());
      this.resizeObserver.disconnect();
      this.tab.removeEventListener("click", this.onTabClick);
      this.term.dispose();
      const next = this.tab.previousElementSibling || this.tab.nextElementSibling;
      this.tab.remove();
      this.panel.remove();
      tabs.delete(this);
      const nextTab = [...tabs].find((t) => t.tab === next);
      if (nextTab) activate(nextTab);
    }
  }

  const tabs = new Set();

  function activate(active) {
    tabs.forEach((t) => {
      const on = t === active;
      t.tab.setAttribute("aria-selected", on ? "true" : "false");
      t.panel.hidden = !on;
    });
    active.term.focus();
    requestAnimationFrame(() => active.fit.fit());
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.open-terminal");
    if (!button) return;
    const tab = new Tab(button.dataset.deviceName, button.dataset.wsUrl);
    tabs.add(tab);
    activate(tab);
    tab.connect();
  });
  // The light or dark palette follows the page's theme (static/js/theme.js) while the terminals run.
  document.addEventListener("gatehouse:theme", () => {
    tabs.forEach((t) => { t.term.options.theme = window.GatehouseTheme.terminalTheme(); });
  });
  window.addEventListener("beforeunload", () => tabs.forEach((t) => t.socket && t.socket.close(1001)));
})();
