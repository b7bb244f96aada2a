// The terminal page around the terminals (terminal.js): a collapsible device list (on phones the page itself until a
// terminal opens, then a drawer), the text size, full screen, a row of extra keys with a sticky Ctrl, and a page
// that follows the phone's keyboard.
(function () {
  "use strict";

  const root = document.getElementById("terminals");
  const terminals = window.GatehouseTerminals;
  if (!root || !terminals) return;
  const phone = window.matchMedia("(max-width: 700px)");  // the stylesheet's phone width: the list is a drawer
  const touch = window.matchMedia("(max-width: 700px), (pointer: coarse)");  // where the extra keys show by default
  const FONT_MIN = 10, FONT_MAX = 24;
  const STORE = { font: "gatehouse-term-font", sidebar: "gatehouse-sidebar", keys: "gatehouse-extra-keys" };
  let fontSize = clampFont(Number(load(STORE.font)) || (phone.matches ? 13 : 14));
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

  // After a click (not a key press) on a control, typing goes on in the shown terminal.
  function backToTerminal(event) {
    const active = terminals.active();
    if (event.detail > 0 && active) active.term.focus();
  }

  // Fit the shown terminals to their panels again.
  function refit() {
    terminals.refit();
  }

  // ---- The device list: a sidebar that collapses on a desktop, a drawer over the page on a phone ----
  const workspace = document.getElementById("workspace");
  const sidebar = document.getElementById("sidebar");
  const backdrop = workspace.querySelector(".sidebar-backdrop");
  const sidebarToggle = document.getElementById("sidebar-toggle");
  const topbar = document.querySelector(".topbar");

  // Say whether a terminal is open (on a phone, with none the device list is the page itself: terminal.css).
  function hasTabs() {
    return terminals.tabs().length > 0;
  }

  // Say whether the device list is in view (on a phone the drawer open, or no terminal yet; elsewhere not collapsed).
  function sidebarShown() {
    if (!phone.matches) return !workspace.classList.contains("sidebar-collapsed");
    return workspace.classList.contains("drawer-open") || !hasTabs();
  }

  // Return the first device button in view (a folded folder hides its own), else the list itself.
  function firstDevice() {
    const shown = [...sidebar.querySelectorAll(".open-terminal")].find((button) => button.checkVisibility());
    return shown || sidebar;
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
    firstDevice().focus();
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
  // The first terminal opened or the last one closed: on a phone the list becomes a drawer, or the page again.
  new MutationObserver(() => {
    if (!hasTabs()) closeDrawer(false);
    syncSidebarToggle();
  }).observe(root.querySelector(".tabbar"), { childList: true });
  // The last terminal closed on a phone: its Devices button is gone with it, so the focus goes into the list.
  document.addEventListener("gatehouse:terminal-closed", () => {
    if (!phone.matches || hasTabs()) return;
    requestAnimationFrame(() => { if (document.activeElement === document.body) firstDevice().focus(); });
  });
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
    terminals.setFontSize(fontSize);
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
    const active = terminals.active();
    if (!button || !active) return;
    const key = button.dataset.key;
    if (key === "ctrl") setCtrl(!ctrlArmed);
    else active.term.input(keyData(key, active.term), true);  // the same path as typed input
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

  // Typed input passes here first: an armed Ctrl makes the next key its control character.
  terminals.setInputFilter((data) => {
    if (!ctrlArmed) return data;
    setCtrl(false);
    return withCtrl(data);
  });
})();
