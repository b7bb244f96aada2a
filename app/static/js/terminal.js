// Terminal tabs: one xterm.js per tab, its socket in terminal_link.js (protocol: docs/protocol.md). The page
// around them is terminal_page.js, split view panes.js, the file manager files.js, coming back terminal_restore.js.
(function () {
  "use strict";

  const root = document.getElementById("terminals");
  if (!root || !window.Terminal) return;
  const tabbar = root.querySelector(".tabbar");
  const tablist = root.querySelector("[role=tablist]");  // owns the tabs only, not the buttons beside them
  const panels = root.querySelector(".panels");
  const encoder = new TextEncoder();
  const publicOrigin = root.dataset.publicOrigin; // the only Origin the server accepts for terminals
  let fontSize = 14;  // the page's controls (terminal_page.js) set it, and change it for every terminal
  let activeTab = null;
  let inputFilter = (data) => data;  // the extra keys' sticky Ctrl (terminal_page.js) changes the next key typed

  // Say a duration in milliseconds as m:ss.
  function clock(ms) {
    const seconds = Math.max(0, Math.round(ms / 1000));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
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
    // Build the tab and its terminal (not connected yet); name is the tab's title, numbered when it repeats.
    constructor(name, path) {
      this.name = name;
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
        if (event.target === this.closeButton) this.askToClose(this.closeButton);
        else if (event.target === this.reconnectButton) this.connect();
        else activate(this);
      };
      this.onTabKey = (event) => {
        if (event.target !== this.tabButton) return;
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); activate(this); }
        else if (event.key === "Delete") { event.preventDefault(); this.askToClose(this.tabButton); }
        else if ((event.key === "r" || event.key === "R") && !this.running()) { event.preventDefault(); this.connect(); }
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
      data = inputFilter(data);
      this.send(encoder.encode(data));
      if (typedHook) typedHook(this, data);  // split view's "type in all panes" (panes.js)
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

    // Open a new session to the device at the terminal's current size (the remote PTY and the recording begin with it).
    connect() {
      this.beginLink();
      this.link.open(this.path);
    }

    // Come back to a session the server keeps (a restored tab, or one open in another window).
    resume(resumePath) {
      this.beginLink();
      this.link.resume(resumePath, 0);
    }

    // A fresh link for this tab: its output goes to the terminal, its states to the tab.
    beginLink() {
      if (this.link) this.link.close();
      this.reconnectButton.hidden = true;
      if (this.hostKeyNotice) this.hostKeyNotice.hidden = true;
      this.showNotice(null);
      this.link = new window.GatehouseLink.Link({
        output: (bytes) => this.term.write(bytes),
        message: (message) => this.receive(message),
        state: (state, info) => this.linkState(state, info),
        size: () => ({ cols: this.term.cols, rows: this.term.rows }),
      });
    }

    // Act on a control message from the server.
    receive(message) {
      if (message.type === "error" || message.type === "moved") {
        this.term.write("\r\n\x1b[1;31m" + message.message + "\x1b[0m\r\n");
        if (message.accept_url) this.offerAccept(message.accept_url);
      } else if (message.type === "closed") {
        this.term.write("\r\n\x1b[33m" + message.message + "\x1b[0m\r\n");
        if (message.reason === "server_restart") this.showNotice("Gatehouse is restarting; this session has ended.", true);
      } else if (message.type === "connected" || message.type === "resumed") {
        this.session = message.session;  // the session's id in the trail: the file manager and split view use it
        this.panel.dataset.session = message.session;
        announce(this);
        if (message.reset) this.term.reset();  // a replay of the kept output follows
        if (message.type === "connected") this.term.write("\x1b[3mHost key " + message.host_key_type + " " + message.host_key + "\x1b[0m\r\n");
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

    // Follow the link's state on the tab: connecting, open, reconnecting (with the time the server keeps the
    // session), or ended (closed by the server, lost, refused).
    linkState(state, info) {
      clearInterval(this.countdown);
      if (state === "connecting" || state === "reconnecting-now") {
        this.setStatus(state === "connecting" ? "connecting" : "reconnecting…");
      } else if (state === "open") {
        this.setStatus("");
        this.showNotice(null);
        if (info.dropped) this.term.write("\r\n\x1b[33m" + info.dropped + " bytes typed while disconnected were not sent (more than 4 KiB).\x1b[0m\r\n");
        this.sendSize();
        if (activeTab === this) this.term.focus();
      } else if (state === "reconnecting") {
        this.setStatus("reconnecting…");
        const tick = () => this.showNotice("Connection lost, reconnecting (attempt " + info.attempt + ")… The session is kept " +
          clock(info.until - Date.now()) + " more.");
        tick();
        this.countdown = setInterval(tick, 1000);
      } else {
        this.ended(state, info);
      }
    }

    // The session is over for this tab: say why and offer a new one.
    ended(state, info) {
      // A refused upgrade (403) reaches the page with no text: say why when the origins disagree.
      const refused = state === "disconnected" && !info.opened && publicOrigin && publicOrigin !== location.origin;
      if (refused) {
        this.term.write("\r\n\x1b[1;31mGatehouse refused this terminal: the page is open at " + location.origin +
          " but the server expects " + publicOrigin + ". Set PUBLIC_URL to the address you open Gatehouse at" +
          " (or let the reverse proxy pass the Host header on; see the README).\x1b[0m\r\n");
      }
      if (state === "lost") this.showNotice("The connection did not come back in time; the session has ended.", true);
      else if (state === "disconnected" && !refused) this.showNotice("The connection was lost.", true);
      if (info.dropped) this.term.write("\r\n\x1b[33m" + info.dropped + " bytes typed while disconnected were not sent.\x1b[0m\r\n");
      this.setStatus(refused ? "refused" : state === "closed" ? "closed" : "disconnected");
      this.reconnectButton.hidden = false;
    }

    // Show a notice over the terminal (null hides it); offer=true adds a button that opens a new session.
    showNotice(text, offer) {
      if (!this.notice) {
        this.notice = element("div", "link-notice");
        this.notice.setAttribute("role", "status");
        this.panel.append(this.notice);
      }
      this.notice.hidden = !text;
      if (!text) return;
      const parts = [element("span", "", text)];
      if (offer && this.path) {
        const button = element("button", "small", "Open a new session");
        button.type = "button";
        button.addEventListener("click", () => this.connect());
        parts.push(button);
      }
      this.notice.replaceChildren(...parts);
    }

    // Send bytes to the device (kept in order while reconnecting, a few KiB at most).
    send(bytes) {
      if (this.link) this.link.send(bytes);
    }

    // Tell the server the terminal's size (the remote PTY follows).
    sendSize() {
      if (this.link) this.link.control({ type: "resize", cols: this.term.cols, rows: this.term.rows });
    }

    // Show a word of state on the tab.
    setStatus(text) {
      this.status.textContent = text;
    }

    // Say whether the session is on (or opening): closing the tab would end it.
    running() {
      return !!this.link && this.link.running();
    }

    // Close on the user's word: a running session asks first (Cancel is the default), an ended one closes at once.
    askToClose(asker) {
      if (!this.running() || !window.GatehouseConfirm) { this.close(); return; }
      window.GatehouseConfirm.ask("Close the session to " + this.name + "? The shell ends.", asker,
        () => { if (tabs.has(this)) this.close(); }, "Close session");
    }

    // End the session on the user's word: a close frame ends it at once; without a socket (reconnecting), ask by POST.
    endSession() {
      const session = this.link.session, wasRunning = this.link.running() && !this.link.ready;
      this.link.close();
      if (session && wasRunning) {
        const meta = document.querySelector('meta[name="csrf-token"]');
        fetch("/terminals/sessions/" + encodeURIComponent(session) + "/close",
          { method: "POST", headers: { "X-CSRFToken": meta ? meta.content : "" } }).catch(() => {});
      }
    }

    // End the session, free the terminal and its listeners, and show the neighbouring tab.
    close() {
      if (this.link) this.endSession();
      clearInterval(this.countdown);
      this.disposables.forEach((d) => d.dispose());
      this.resizeObserver.disconnect();
      this.tab.removeEventListener("click", this.onTabClick);
      this.tab.removeEventListener("keydown", this.onTabKey);
      this.term.dispose();
      const next = this.tab.previousElementSibling || this.tab.nextElementSibling;
      this.tab.remove();
      this.panel.remove();
      tabs.delete(this);
      releaseNumber(this.path);
      syncTablist();
      document.dispatchEvent(new CustomEvent("gatehouse:terminal-closed", { detail: { tab: this } }));
      const wasActive = activeTab === this;
      if (wasActive) activeTab = null;
      // Closing the shown tab shows its neighbour; closing another keeps the shown one (split view fills the gap).
      const nextTab = wasActive ? [...tabs].find((t) => t.tab === next) : activeTab;
      if (nextTab) activate(nextTab);
      else document.getElementById("sidebar-toggle").focus();  // the last one: back to where terminals come from
    }
  }
  Tab.count = 0;

  const tabs = new Set();
  let placer = (tab) => [tab];  // which tabs are shown when one is chosen: split view (panes.js) shows several
  let typedHook = null;  // told of every typed input, after it went to its own terminal
  const numbering = new Map();  // device path → {next: number of its next tab, open: its tabs open now}

  // Return the title of a new tab to a device: its name, then "name (2)", "name (3)"… while any tab to it is open.
  function numberedName(name, path) {
    const count = numbering.get(path) || { next: 1, open: 0 };
    const number = count.next;
    count.next += 1;
    count.open += 1;
    numbering.set(path, count);
    return number === 1 ? name : name + " (" + number + ")";
  }

  // A tab to a device closed: once none is open, the next one is plain "name" again.
  function releaseNumber(path) {
    const count = numbering.get(path);
    if (count && --count.open <= 0) numbering.delete(path);
  }

  // Show one tab's terminal (and those of the other panes in split view), give it the focus and fit them.
  function activate(active) {
    activeTab = active;
    const shown = placer(active);
    tabs.forEach((t) => {
      const on = t === active;
      t.tab.classList.toggle("is-active", on);
      t.tabButton.setAttribute("aria-selected", on ? "true" : "false");
      [t.tabButton, t.reconnectButton, t.closeButton].forEach((b) => { b.tabIndex = on ? 0 : -1; });  // one stop: the shown tab
      t.panel.hidden = !shown.includes(t);
    });
    active.term.focus();
    requestAnimationFrame(() => shown.forEach((t) => { if (tabs.has(t)) t.fit.fit(); }));
    announce(active);
  }

  // Tell the page's other parts (files.js, panes.js) which terminal is shown, and its session once connected.
  function announce(tab) {
    if (tab !== activeTab) return;
    document.dispatchEvent(new CustomEvent("gatehouse:terminal-shown",
      { detail: { tab: tab, session: tab.session || null, name: tab.name } }));
  }

  // Give the tab list the tabs, in their order on the bar (aria-owns: the buttons beside them stay out of it).
  function syncTablist() {
    tablist.setAttribute("aria-owns", [...tabbar.querySelectorAll("[role=tab]")].map((t) => t.id).join(" "));
    tablist.hidden = tabs.size === 0;
  }

  // Fit the shown terminals to their panels again; a changed size goes to the server (onResize).
  function refit() {
    requestAnimationFrame(() => tabs.forEach((t) => { if (!t.panel.hidden) t.fit.fit(); }));
  }

  // Add a tab (not connected yet) to a device's websocket path, numbered when another tab has that device.
  function openTab(name, path) {
    const tab = new Tab(numberedName(name, path), path);
    tabs.add(tab);
    syncTablist();
    return tab;
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.open-terminal");
    if (!button) return;
    const tab = openTab(button.dataset.deviceName, button.dataset.wsUrl);
    document.dispatchEvent(new CustomEvent("gatehouse:terminal-opened", { detail: { name: button.dataset.deviceName } }));
    activate(tab);
    tab.connect();
  });


  // The light or dark palette follows the page's theme (static/js/theme.js) while the terminals run.
  document.addEventListener("gatehouse:theme", () => {
    tabs.forEach((t) => { t.term.options.theme = window.GatehouseTheme.terminalTheme(); });
  });
  // What the page's other parts may use: the tabs (in the bar's order), the shown one, and showing one; split
  // view (panes.js) decides which tabs a choice shows (setPlacer) and hears typed input (onTyped).
  window.GatehouseTerminals = {
    tabs: () => [...tabbar.children].map((chip) => [...tabs].find((t) => t.tab === chip)).filter(Boolean),
    active: () => activeTab, activate: activate, refit: refit,
    setPlacer: (fn) => { placer = fn; }, onTyped: (fn) => { typedHook = fn; },
    setInputFilter: (fn) => { inputFilter = fn; }, openTab: openTab,
    // The text size of every terminal (the shown ones refit; the others fit when shown).
    setFontSize: (size) => { fontSize = size; tabs.forEach((t) => { t.term.options.fontSize = size; }); refit(); },
  };
  // Leaving or reloading with terminals running asks first; they come back after a reload anyway (restore below).
  window.addEventListener("beforeunload", (event) => {
    if (![...tabs].some((t) => t.running())) return;
    event.preventDefault();
    event.returnValue = "";
  });

  // Log-out ends every terminal: its confirmation (dialogs.js, data-confirm) says how many, asked only when some run.
  // A window listener in the capture phase sets the question before the dialogs' document listener reads it.
  const logoutButton = document.getElementById("logout-icon");
  window.addEventListener("submit", (event) => {
    if (!logoutButton || event.target !== logoutButton.form) return;
    const running = [...tabs].filter((t) => t.running()).length;
    if (running) event.target.dataset.confirm = "Log out? " + running + (running === 1 ? " terminal" : " terminals") + " will be closed.";
    else delete event.target.dataset.confirm;
  }, true);
})();
