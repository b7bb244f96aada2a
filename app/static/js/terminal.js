// Terminal tabs: one xterm.js per tab, bytes over a websocket (protocol: docs/protocol.md); the page around
// them: a collapsible device list (a drawer on phones), text size, full screen and a row of extra keys.
(function () {
  "use strict";

  const root = document.getElementById("terminals");
  if (!root || !window.Terminal) return;
  const tabbar = root.querySelector(".tabbar");
  const tablist = root.querySelector("[role=tablist]");  // owns the tabs only, not the buttons beside them
  const panels = root.querySelector(".panels");
  const encoder = new TextEncoder();
  const PASTE_CHUNK = 32 * 1024; // large pastes travel as several frames, well under the server's limit
  const publicOrigin = root.dataset.publicOrigin; // the only Origin the server accepts for terminals
  const phone = window.matchMedia("(max-width: 700px)");  // the stylesheet's phone width: the list is a drawer
  const touch = window.matchMedia("(max-width: 700px), (pointer: coarse)");  // where the extra keys show by default
  const FONT_MIN = 10, FONT_MAX = 24;
  const STORE = { font: "gatehouse-term-font", sidebar: "gatehouse-sidebar", keys: "gatehouse-extra-keys" };
  let fontSize = clampFont(Number(load(STORE.font)) || (phone.matches ? 13 : 14));
  let activeTab = null;
  let ctrlArmed = false;  // the extra keys' Ctrl: the next key typed becomes its control character

  // Read a remembered setting (null when absent or when storage is refused).
  function load(key) {
    try { return localStorage.getItem(key); } catch (err) { return null; }
  }

  // Remember a setting for this browser; null forgets it.
  function store(key, value) {
    try {
      if (value === null) localStorage.removeItem(key); else localStorage.setItem(key, value);
    } catch (err) { /* storage refused: the choice lasts for this page only */ }
  }

  // Keep a text size within what stays readable and useful.
  function clampFont(size) {
    return Math.min(FONT_MAX, Math.max(FONT_MIN, Math.round(size)));
  }

  // Same origin as the page, whatever scheme and host the server thought it had.
  function wsUrl(url) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + new URL(url, location.href).pathname;
  }

  // Make an element with a class and a text.
  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  // One terminal: its tab, its panel, its xterm.js and its websocket.
  class Tab {
    // Build the tab and its terminal (not connected yet).
    constructor(name, path) {
      this.path = path;
      this.buildDom(name);
      this.setUpTerminal();
      this.wireListeners();
    }

    // Make the tab (the tab proper with name and status; reconnect and close beside it) and the terminal's panel.
    buildDom(name) {
      this.panelId = "terminal-panel-" + (++Tab.count);
      this.tab = element("div", "tab");  // the chip: the tab proper, then its buttons (a tab may hold no control)
      this.tabButton = element("span", "tab-label");
      this.tabButton.id = this.panelId + "-tab";
      this.tabButton.setAttribute("role", "tab");
      this.tabButton.tabIndex = 0;
      this.tabButton.setAttribute("aria-controls", this.panelId);
      this.tabButton.setAttribute("aria-keyshortcuts", "Delete R");  // close, reconnect
      this.status = element("span", "tab-status");
      this.tabButton.append(element("span", "tab-name", name), this.status);
      this.reconnectButton = element("button", "reconnect", "↻");
      this.reconnectButton.type = "button";
      this.reconnectButton.title = "Reconnect (R)";
      this.reconnectButton.setAttribute("aria-label", "Reconnect terminal " + name);
      this.reconnectButton.hidden = true;
      this.closeButton = element("button", "tab-close", "×");
      this.closeButton.type = "button";
      this.closeButton.title = "Close this terminal (Delete)";
      this.closeButton.setAttribute("aria-label", "Close terminal " + name);
      this.tab.append(this.tabButton, this.reconnectButton, this.closeButton);
      this.panel = element("div", "terminal-panel");
      this.panel.id = this.panelId;
      this.panel.setAttribute("role", "tabpanel");
      this.panel.setAttribute("aria-labelledby", this.tabButton.id);
      this.watched = element("div", "watched-notice");
      this.watched.setAttribute("role", "status");
      this.watched.hidden = true;
      this.panel.append(this.watched);
      tabbar.append(this.tab);
      panels.append(this.panel);
    }

    // Start xterm.js in the panel at the page's text size and theme.
    setUpTerminal() {
      this.term = new window.Terminal({
        cursorBlink: true, scrollback: 5000, fontSize: fontSize,
        fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
        theme: window.GatehouseTheme ? window.GatehouseTheme.terminalTheme() : undefined,
      });
      this.fit = new window.FitAddon.FitAddon();
      this.term.loadAddon(this.fit);
      this.term.open(this.panel);
      this.term.attachCustomKeyEventHandler((event) => this.copyKey(event));
    }

    // Send what is typed, follow size changes, and answer clicks and keys on the tab.
    wireListeners() {
      this.disposables = [
        this.term.onData((data) => this.typed(data)),
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
      this.onTabKey = (event) => {
        if (event.target !== this.tabButton) return;
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); activate(this); }
        else if (event.key === "Delete") { event.preventDefault(); this.close(); }
        else if ((event.key === "r" || event.key === "R") && !this.socket) { event.preventDefault(); this.connect(); }
        else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
          const next = event.key === "ArrowRight" ? this.tab.nextElementSibling : this.tab.previousElementSibling;
          if (next) next.querySelector("[role=tab]").focus();
        }
      };
      this.tab.addEventListener("click", this.onTabClick);
      this.tab.addEventListener("keydown", this.onTabKey);
    }

    // Typed input, from the keyboard or the extra keys (term.input), on its one way to the server.
    typed(data) {
      if (ctrlArmed) {
        setCtrl(false);
        data = withCtrl(data);
      }
      this.send(encoder.encode(data));
    }

    // Copy the selection on Ctrl+Shift+C and keep that key from the remote program.
    copyKey(event) {
      // Ctrl+Shift+C copies the selection; plain Ctrl+C stays an interrupt for the remote program.
      if (event.type === "keydown" && event.ctrlKey && event.shiftKey && event.code === "KeyC") {
        if (navigator.clipboard && this.term.hasSelection()) navigator.clipboard.writeText(this.term.getSelection());
        return false;
      }
      return true;
    }

    // Open the websocket at the terminal's current size.
    connect() {
      this.setStatus("connecting");
      this.reconnectButton.hidden = true;
      if (this.hostKeyNotice) this.hostKeyNotice.hidden = true;
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

    // Show output, or act on a control message from the server.
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
        if (message.accept_url) this.offerAccept(message.accept_url);
      } else if (message.type === "closed") {
        this.term.write("\r\n\x1b[33m" + message.message + "\x1b[0m\r\n");
        this.closedByServer = true;
      } else if (message.type === "connected") {
        this.term.write("\x1b[3mHost key " + message.host_key_type + " " + message.host_key + "\x1b[0m\r\n");
      } else if (message.type === "watched") {
        // Somebody (an admin) sees this session as it happens: the user must know.
        this.watched.textContent = message.message || "";
        this.watched.hidden = !message.message;
        this.tab.classList.toggle("is-watched", !!message.message);
      } else if (message.type === "status") {
        this.term.write("\x1b[3m" + message.message + "\x1b[0m\r\n");  // italic: dim text would not contrast
      }
    }

    // A changed host key: link to the page that shows both fingerprints and accepts exactly the offered key.
    offerAccept(url) {
      if (!this.hostKeyNotice) {
        this.hostKeyNotice = element("div", "hostkey-notice");
        this.hostKeyNotice.setAttribute("role", "alert");
        this.panel.append(this.hostKeyNotice);
      }
      const link = element("a", "", "Accept this new key…");
      link.href = url;
      link.target = "_blank";  // a new browser tab: the other terminals stay open
      link.rel = "noopener";
      this.hostKeyNotice.replaceChildren("The host key changed. ", link);
      this.hostKeyNotice.hidden = false;
    }

    // The socket closed: say why on the tab and offer to reconnect.
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

    // Send bytes as binary frames, a large paste in several.
    send(bytes) {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
      for (let start = 0; start < bytes.length; start += PASTE_CHUNK) {
        this.socket.send(bytes.subarray(start, start + PASTE_CHUNK));
      }
    }

    // Tell the server the terminal's size (the remote PTY follows).
    sendSize() {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify({ type: "resize", cols: this.term.cols, rows: this.term.rows }));
      }
    }

    // Show a word of state on the tab.
    setStatus(text) {
      this.status.textContent = text;
    }

    // End the session, free the terminal and its listeners, and show the neighbouring tab.
    close() {
      if (this.socket) {
        this.socket.onclose = null;
        this.socket.close(1000, "tab closed");
      }
      this.disposables.forEach((d) => d.dispose());
      this.resizeObserver.disconnect();
      this.tab.removeEventListener("click", this.onTabClick);
      this.tab.removeEventListener("keydown", this.onTabKey);
      this.term.dispose();
      const next = this.tab.previousElementSibling || this.tab.nextElementSibling;
      this.tab.remove();
      this.panel.remove();
      tabs.delete(this);
      syncTablist();
      if (activeTab === this) activeTab = null;
      const nextTab = [...tabs].find((t) => t.tab === next);
      if (nextTab) activate(nextTab);
      else document.getElementById("sidebar-toggle").focus();  // the last one: back to where terminals come from
    }
  }
  Tab.count = 0;

  const tabs = new Set();

  // Show one tab's terminal, give it the focus and fit it to the panel.
  function activate(active) {
    activeTab = active;
    tabs.forEach((t) => {
      const on = t === active;
      t.tab.classList.toggle("is-active", on);
      t.tabButton.setAttribute("aria-selected", on ? "true" : "false");
      [t.tabButton, t.reconnectButton, t.closeButton].forEach((b) => { b.tabIndex = on ? 0 : -1; });  // one stop: the shown tab
      t.panel.hidden = !on;
    });
    active.term.focus();
    requestAnimationFrame(() => active.fit.fit());
  }

  // Give the tab list the tabs, in their order on the bar (aria-owns: the buttons beside them stay out of it).
  function syncTablist() {
    tablist.setAttribute("aria-owns", [...tabbar.querySelectorAll("[role=tab]")].map((t) => t.id).join(" "));
    tablist.hidden = tabs.size === 0;
  }

  // After a click (not a key press) on a control, typing goes on in the shown terminal.
  function backToTerminal(event) {
    if (event.detail > 0 && activeTab) activeTab.term.focus();
  }

  // Fit the shown terminal to its panel again; a changed size goes to the server (onResize).
  function refit() {
    requestAnimationFrame(() => { if (activeTab && !activeTab.panel.hidden) activeTab.fit.fit(); });
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.open-terminal");
    if (!button) return;
    const tab = new Tab(button.dataset.deviceName, button.dataset.wsUrl);
    tabs.add(tab);
    syncTablist();
    document.dispatchEvent(new CustomEvent("gatehouse:terminal-opened", { detail: { name: button.dataset.deviceName } }));
    activate(tab);
    tab.connect();
  });
  // The light or dark palette follows the page's theme (static/js/theme.js) while the terminals run.
  document.addEventListener("gatehouse:theme", () => {
    tabs.forEach((t) => { t.term.options.theme = window.GatehouseTheme.terminalTheme(); });
  });
  window.addEventListener("beforeunload", () => tabs.forEach((t) => t.socket && t.socket.close(1001)));

  // ---- The device list: a sidebar that collapses on a desktop, a drawer over the page on a phone ----
  const workspace = document.getElementById("workspace");
  const sidebar = document.getElementById("sidebar");
  const backdrop = workspace.querySelector(".sidebar-backdrop");
  const sidebarToggle = document.getElementById("sidebar-toggle");
  const topbar = document.querySelector(".topbar");

  // Say whether the device list is in view (the drawer open on a phone, the sidebar not collapsed elsewhere).
  function sidebarShown() {
    return phone.matches ? workspace.classList.contains("drawer-open") : !workspace.classList.contains("sidebar-collapsed");
  }

  // Put the toggle's aria-expanded in line with what is shown.
  function syncSidebarToggle() {
    sidebarToggle.setAttribute("aria-expanded", String(sidebarShown()));
  }

  // Collapse or show the desktop sidebar, remember it, and let the terminal take the freed width.
  function setCollapsed(collapsed) {
    workspace.classList.toggle("sidebar-collapsed", collapsed);
    store(STORE.sidebar, collapsed ? "collapsed" : null);
    syncSidebarToggle();
    refit();
  }

  // Open the phone drawer over the page; the page behind is inert and the focus goes into the list.
  function openDrawer() {
    workspace.classList.add("drawer-open");
    backdrop.hidden = false;
    root.inert = true;
    if (topbar) topbar.inert = true;
    syncSidebarToggle();
    (sidebar.querySelector(".open-terminal") || sidebar).focus();
  }

  // Close the phone drawer; the focus goes back to the Devices button unless a terminal takes it.
  function closeDrawer(returnFocus) {
    if (!workspace.classList.contains("drawer-open")) return;
    workspace.classList.remove("drawer-open");
    backdrop.hidden = true;
    root.inert = false;
    if (topbar) topbar.inert = false;
    syncSidebarToggle();
    if (returnFocus) sidebarToggle.focus();
  }

  workspace.classList.toggle("sidebar-collapsed", load(STORE.sidebar) === "collapsed");
  syncSidebarToggle();
  sidebarToggle.addEventListener("click", (event) => {
    if (!phone.matches) {
      setCollapsed(!workspace.classList.contains("sidebar-collapsed"));
      backToTerminal(event);
    } else if (workspace.classList.contains("drawer-open")) closeDrawer(true);
    else openDrawer();
  });
  backdrop.addEventListener("click", () => closeDrawer(true));
  document.addEventListener("keydown", (event) => {
    // Esc closes the drawer, unless something inside (a dialog, the search box) used that Esc itself.
    if (event.key !== "Escape" || event.defaultPrevented || event.target.closest("dialog")) return;
    if (workspace.classList.contains("drawer-open")) closeDrawer(true);
  });
  document.addEventListener("gatehouse:terminal-opened", () => closeDrawer(false));
  phone.addEventListener("change", () => { closeDrawer(false); syncSidebarToggle(); refit(); });

  // ---- Text size of every terminal ----
  const fontOutput = document.getElementById("font-size");
  const fontSmaller = document.getElementById("font-smaller");
  const fontLarger = document.getElementById("font-larger");

  // Set the text size of all terminals, remember it, and refit the shown one (the others fit when shown).
  function setFontSize(size) {
    fontSize = clampFont(size);
    fontOutput.value = fontSize + " px";
    fontSmaller.setAttribute("aria-disabled", String(fontSize <= FONT_MIN));
    fontLarger.setAttribute("aria-disabled", String(fontSize >= FONT_MAX));
    tabs.forEach((t) => { t.term.options.fontSize = fontSize; });
    refit();
  }

  setFontSize(fontSize);
  [[fontSmaller, -1], [fontLarger, 1]].forEach(([button, step]) => button.addEventListener("click", (event) => {
    setFontSize(fontSize + step);
    store(STORE.font, String(fontSize));
    backToTerminal(event);
  }));

  // ---- Full screen: the terminals section alone ----
  const fullscreenToggle = document.getElementById("fullscreen-toggle");
  fullscreenToggle.hidden = !root.requestFullscreen;  // iPhones have no element full screen
  fullscreenToggle.addEventListener("click", (event) => {
    if (document.fullscreenElement) document.exitFullscreen();
    else root.requestFullscreen().catch(() => {});
    backToTerminal(event);
  });
  document.addEventListener("fullscreenchange", () => {
    const on = document.fullscreenElement === root;
    fullscreenToggle.setAttribute("aria-pressed", String(on));
    fullscreenToggle.setAttribute("aria-label", on ? "Leave full screen" : "Full screen");
    refit();
  });

  // ---- Extra keys: Esc, Tab, a sticky Ctrl, arrows, | and ~, for phones without them ----
  const extraKeys = document.getElementById("extra-keys");
  const keysToggle = document.getElementById("keys-toggle");
  const ctrlButton = extraKeys.querySelector('[data-key="ctrl"]');
  const ARROWS = { up: "A", down: "B", right: "C", left: "D" };
  const PLAIN = { esc: "\x1b", tab: "\t", "|": "|", "~": "~" };

  // Arm or disarm the sticky Ctrl; the button shows which.
  function setCtrl(armed) {
    ctrlArmed = armed;
    ctrlButton.setAttribute("aria-pressed", String(armed));
  }

  // Return what Ctrl with this input sends: a letter or symbol its control character, an arrow CSI 1;5.
  function withCtrl(data) {
    const arrow = /^\x1b[[O]([ABCD])$/.exec(data);
    if (arrow) return "\x1b[1;5" + arrow[1];
    if (data.length !== 1) return data;  // a paste or a composed word: sent as it is
    const code = data.charCodeAt(0);
    if (code >= 0x40 && code <= 0x7e) return String.fromCharCode(code & 0x1f);  // a-z, @[\]^_, | and ~
    if (data === "?") return "\x7f";
    if (data === " " || data === "2") return "\x00";
    return data;
  }

  // Return the bytes an extra key types; arrows follow the terminal's cursor-key mode (DECCKM).
  function keyData(key, term) {
    if (ARROWS[key]) return (term.modes.applicationCursorKeysMode ? "\x1bO" : "\x1b[") + ARROWS[key];
    return PLAIN[key];
  }

  // Show or hide the row of extra keys and refit the terminal to the space left.
  function showKeys(shown) {
    extraKeys.hidden = !shown;
    keysToggle.setAttribute("aria-pressed", String(shown));
    refit();
  }

  showKeys(load(STORE.keys) ? load(STORE.keys) === "on" : touch.matches);
  keysToggle.addEventListener("click", (event) => {
    showKeys(extraKeys.hidden);
    store(STORE.keys, extraKeys.hidden ? "off" : "on");
    backToTerminal(event);
  });
  touch.addEventListener("change", () => { if (!load(STORE.keys)) showKeys(touch.matches); });
  // A tap on a key must not take the focus from the terminal: the phone's keyboard stays up.
  ["pointerdown", "mousedown"].forEach((type) => extraKeys.addEventListener(type, (event) => {
    if (event.target.closest("button")) event.preventDefault();
  }));
  extraKeys.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-key]");
    if (!button || !activeTab) return;
    const key = button.dataset.key;
    if (key === "ctrl") setCtrl(!ctrlArmed);
    else activeTab.term.input(keyData(key, activeTab.term), true);  // the same path as typed input
    backToTerminal(event);  // a tap or click; from the keyboard the focus stays on the key
  });

  // ---- Phones: the page follows the visual viewport, so the extra keys stay above the on-screen keyboard ----
  // Set --visual-height (the stylesheet sizes the page with it on phones), unless the user zoomed in.
  function followVisualViewport() {
    const viewport = window.visualViewport;
    if (viewport && Math.abs(viewport.scale - 1) < 0.01) {
      document.documentElement.style.setProperty("--visual-height", Math.round(viewport.height) + "px");
    } else {
      document.documentElement.style.removeProperty("--visual-height");
    }
  }

  if (window.visualViewport) {
    window.visualViewport.addEventListener("resize", followVisualViewport);
    followVisualViewport();
  }
})();
