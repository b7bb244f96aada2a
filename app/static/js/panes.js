// Split view: one, two (side by side or stacked) or four terminals in one view, each fitting its pane; the focused
// pane is marked, a click or Ctrl+Alt+←/→/↑/↓ moves the focus, dragging a tab onto a side of the terminal splits.
// "Type in all panes" mirrors what is typed in the focused pane to the others, once the trail has recorded it
// (POST /terminals/broadcast, app/terminals/broadcast.py). Described in docs/protocol.md, "The terminal page".
(function () {
  "use strict";

  const root = document.getElementById("terminals");
  const terminals = window.GatehouseTerminals;
  const layoutButton = document.getElementById("panes-layout");
  if (!root || !terminals || !terminals.setPlacer || !layoutButton) return;
  const panels = root.querySelector(".panels");
  const menu = document.getElementById("panes-menu");
  const broadcastButton = document.getElementById("panes-broadcast");
  const phone = window.matchMedia("(max-width: 700px)");  // one pane only, as the stylesheet's phone width
  const encoder = new TextEncoder();
  const COUNT = { one: 1, columns: 2, rows: 2, grid: 4 };
  // Each pane's column and row: the arrows move to the pane beside the focused one.
  const SPOTS = { one: [[0, 0]], columns: [[0, 0], [1, 0]], rows: [[0, 0], [0, 1]], grid: [[0, 0], [1, 0], [0, 1], [1, 1]] };
  const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  const TAB_TYPE = "application/x-gatehouse-tab";  // never text: a tab dropped on a terminal types nothing

  const STORE = "gatehouse-split";  // the layout chosen, remembered by this browser (localStorage)
  let wanted = COUNT[load()] ? load() : "one";  // the layout chosen; a phone shows one pane whatever it is
  let layout = "one";  // the layout shown
  let panes = [null];  // each pane's tab, null for an empty pane
  let focus = 0;  // the focused pane
  let closed = false;  // a tab closed since the last placing: an emptied layout collapses
  let dragged = null;  // the tab being dragged
  const placed = new WeakSet();  // tabs shown before: a new one goes to an empty pane first
  const broadcast = { on: false, sessions: [], asking: false };
  const heads = [], empties = [];
  let drop = null, note = null;

  // Make an element with a class and a text.
  function element(tag, className, text) {
    const node = document.createElement(tag);
    node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  // Read the remembered layout (null when absent or when storage is refused).
  function load() {
    try { return localStorage.getItem(STORE); } catch (err) { return null; }
  }

  // Choose a layout and remember it for the next visit.
  function want(name) {
    wanted = name;
    try { localStorage.setItem(STORE, name); } catch (err) { /* storage refused: this page only */ }
  }

  // Return the layout to show: the chosen one, or one pane on a phone.
  function effective() {
    return phone.matches ? "one" : wanted;
  }

  // Return the open tabs no pane shows, in the bar's order.
  function hiddenTabs() {
    return terminals.tabs().filter((t) => !panes.includes(t));
  }

  // Set the layout: the panes keep their tabs in order (the focused one always), then take hidden tabs.
  function resize(name, keep) {
    const count = COUNT[name];
    let kept = panes.filter(Boolean);
    if (keep && !kept.includes(keep)) kept.push(keep);
    if (kept.length > count) {
      const first = kept.slice(0, count);
      if (keep && !first.includes(keep)) first[count - 1] = keep;
      kept = first;
    }
    panes = kept;
    hiddenTabs().slice(0, count - panes.length).forEach((t) => panes.push(t));
    while (panes.length < count) panes.push(null);
    layout = name;
    focus = Math.max(0, panes.indexOf(keep));
  }

  // After a tab closed: an empty pane takes a hidden tab, and a view left with one tab (or two of four) shrinks.
  function collapse(active) {
    panes.forEach((t, i) => { if (!t) panes[i] = hiddenTabs()[0] || null; });
    const filled = panes.filter(Boolean);
    if (layout === "one" || filled.length === panes.length) return;
    if (filled.length <= 1) want("one");
    else if (filled.length === 2 && layout === "grid") want("columns");
    else return;
    panes = filled;
    resize(wanted, active);
  }

  // terminal.js asks which tabs to show when one is chosen: it goes into the focused pane (a new one into an empty
  // pane), or, when a pane shows it already, that pane takes the focus.
  function place(active) {
    const open = terminals.tabs();
    panes = panes.map((t) => (t && open.includes(t) ? t : null));
    if (layout !== effective()) resize(effective(), active);
    let at = panes.indexOf(active);
    if (at < 0) {
      const empty = panes[focus] === null ? focus : panes.indexOf(null);
      at = !placed.has(active) && empty >= 0 ? empty : focus;
      panes[at] = active;
    }
    focus = at;
    placed.add(active);
    if (closed) collapse(active);
    closed = false;
    focus = Math.max(0, panes.indexOf(active));
    render();
    followBroadcast();
    return panes.filter(Boolean);
  }

  // Show a pane's tab, or give an empty pane the focus.
  function focusPane(index) {
    if (index < 0 || index >= panes.length) return;
    if (panes[index]) {
      terminals.activate(panes[index]);
    } else {
      focus = index;
      render();
      empties[index].focus();
    }
  }

  // Ctrl+Alt+arrow: the focus moves to the pane on that side (none there: it stays).
  function move(step) {
    const spots = SPOTS[layout];
    const [x, y] = spots[focus] || [0, 0];
    focusPane(spots.findIndex(([a, b]) => a === x + step[0] && b === y + step[1]));
  }

  // Return pane index's head (its number, its tab's name, the broadcast badge), made once.
  function head(index) {
    if (!heads[index]) {
      const node = element("div", "pane-head");
      node.dataset.pane = String(index);
      node.append(element("span", "pane-number", String(index + 1)), element("span", "pane-name"),
        element("span", "pane-badge", "Typing in all panes"));
      node.addEventListener("click", () => focusPane(index));
      heads[index] = node;
    }
    return heads[index];
  }

  // Return pane index's stand-in while it shows no tab, made once.
  function empty(index) {
    if (!empties[index]) {
      const node = element("div", "pane-empty",
        "Empty pane. Click a tab above or drag one here, or open a device from the list.");
      node.dataset.pane = String(index);
      node.tabIndex = 0;
      node.addEventListener("click", () => focusPane(index));
      empties[index] = node;
    }
    return empties[index];
  }

  // Put the page in line with the state: the grid, each pane's head and place, the marks and the controls.
  function render() {
    const split = layout !== "one";
    panels.classList.toggle("panes-split", split);
    ["columns", "rows", "grid"].forEach((name) => panels.classList.toggle("panes-" + name, layout === name));
    terminals.tabs().forEach((t) => {
      const at = split ? panes.indexOf(t) : -1;
      if (at >= 0) { t.panel.dataset.pane = String(at); t.tab.dataset.pane = String(at + 1); }
      else { delete t.panel.dataset.pane; delete t.tab.dataset.pane; }
      t.panel.classList.toggle("pane-focused", at >= 0 && at === focus);
      t.panel.classList.toggle("pane-broadcast", at >= 0 && broadcasting(t));
      t.tab.draggable = !phone.matches;
    });
    for (let i = 0; i < 4; i++) renderPane(i, split && i < panes.length);
    layoutButton.dataset.layout = layout;
    layoutButton.setAttribute("aria-label", "Split view: " + menu.querySelector(`[data-layout="${layout}"]`).textContent.trim());
    menu.querySelectorAll("[data-layout]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.layout === wanted)));
    broadcastButton.hidden = !split;
    broadcastButton.setAttribute("aria-pressed", String(broadcast.on));
  }

  // Show or remove pane index's head and empty stand-in.
  function renderPane(index, shown) {
    const tab = shown ? panes[index] : null;
    const node = head(index);
    if (shown) {
      node.querySelector(".pane-name").textContent = tab ? tab.name : "Empty";
      node.title = (tab ? tab.name : "Empty pane") + " (pane " + (index + 1) + "; Ctrl+Alt+arrows move between panes)";
      node.classList.toggle("is-focused", index === focus);
      node.classList.toggle("is-broadcast", !!tab && broadcasting(tab));
      if (!node.isConnected) panels.append(node);
    } else node.remove();
    const stand = empty(index);
    stand.classList.toggle("pane-focused", index === focus);
    if (shown && !tab) { if (!stand.isConnected) panels.append(stand); } else stand.remove();
  }

  // ---- Type in all panes ----

  // Return the tabs that would take part now: running, connected ones in view, the focused pane's first.
  function members() {
    const order = [panes[focus], ...panes.filter((_, i) => i !== focus)];
    return order.filter((t) => t && t.session && t.running());
  }

  // Say whether a tab's session takes part in the broadcast the trail recorded.
  function broadcasting(tab) {
    return broadcast.on && !!tab.session && broadcast.sessions.includes(tab.session);
  }

  // Show a message over the terminals (a refusal, why the broadcast stopped); empty text hides it.
  function say(text) {
    if (!note) {
      note = element("div", "panes-note");
      note.setAttribute("role", "alert");
      const words = element("span", "panes-note-text");
      const dismiss = element("button", "panes-note-close", "×");
      dismiss.type = "button";
      dismiss.setAttribute("aria-label", "Dismiss this message");
      dismiss.addEventListener("click", () => say(""));
      note.append(words, dismiss);
    }
    note.querySelector(".panes-note-text").textContent = text;
    if (text && !note.isConnected) panels.append(note);
    else if (!text) note.remove();
  }

  // Ask the server to record the broadcast's state; resolve with its answer, reject with its words.
  function report(sessions, on, cause) {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return fetch(broadcastButton.dataset.url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": meta ? meta.content : "" },
      body: JSON.stringify({ sessions: sessions, on: on, cause: cause }),
    }).then((response) => response.json().catch(() => ({})).then((body) => {
      if (!response.ok) throw new Error(body.error || "The server answered " + response.status + ".");
      return body;
    }));
  }

  // Switch the broadcast on: only once the trail holds the event (fail closed), and only with two terminals.
  function switchOn() {
    const tabs = members();
    if (tabs.length < 2) {
      say("Type in all panes needs at least two connected terminals in view.");
      return;
    }
    broadcast.asking = true;
    const sessions = tabs.map((t) => t.session);
    report(sessions, true, "toggle").then(() => {
      Object.assign(broadcast, { on: true, sessions: sessions });
      say("");
    }, (error) => say(error.message)).finally(() => {
      broadcast.asking = false;
      followBroadcast();  // the panes may have changed while the trail was asked
      render();
    });
  }

  // Switch the broadcast off at once (typing stops going to the others), then record it.
  function switchOff(cause, why) {
    const sessions = broadcast.sessions;
    Object.assign(broadcast, { on: false, sessions: [] });
    render();
    if (why) say(why);
    if (sessions.length) {
      report(sessions, false, cause).catch((error) => say("Type in all panes is off; " + error.message));
    }
  }

  // The panes changed while broadcasting: record the new set, or switch off when fewer than two remain.
  function followBroadcast() {
    if (!broadcast.on || broadcast.asking) return;
    const sessions = members().map((t) => t.session);
    if (sessions.length < 2) {
      switchOff("panes", "Type in all panes is off: fewer than two terminals are in view.");
      return;
    }
    if (sessions.length === broadcast.sessions.length && sessions.every((s) => broadcast.sessions.includes(s))) return;
    broadcast.asking = true;
    report(sessions, true, "panes").then(() => { if (broadcast.on) broadcast.sessions = sessions; }, (error) => {
      if (broadcast.on) switchOff("panes", "Type in all panes is off: " + error.message);
    }).finally(() => { broadcast.asking = false; render(); });
  }

  // Typed in the focused pane while broadcasting: the same input goes to every other pane taking part, each
  // through its own terminal's send path (one binary frame each), so each session records it.
  terminals.onTyped((tab, data) => {
    if (!broadcast.on || tab !== panes[focus]) return;
    followBroadcast();  // a pane that ended, reconnected or came into view changes the set (and the trail says so)
    if (!broadcasting(tab)) return;
    const bytes = encoder.encode(data);
    panes.forEach((other) => { if (other && other !== tab && broadcasting(other)) other.send(bytes); });
  });

  broadcastButton.addEventListener("click", (event) => {
    if (broadcast.on) switchOff("toggle");  // off is never held back
    else if (!broadcast.asking) switchOn();
    const active = terminals.active();
    if (active && event.detail > 0) active.term.focus();  // a click gives the typing back; a key press stays here
  });

  // ---- Choosing a layout ----

  // Show the chosen layout with the tabs there are.
  function choose(name) {
    want(name);
    const active = terminals.active();
    if (active) terminals.activate(active);
    else { resize(effective(), null); render(); layoutButton.focus(); }  // no terminal yet: the next ones fill it
  }

  menu.addEventListener("beforetoggle", (event) => {
    if (event.newState !== "open") return;
    const box = layoutButton.getBoundingClientRect();  // under the button, right edges aligned
    menu.style.top = Math.round(box.bottom + 4) + "px";
    menu.style.right = Math.max(4, Math.round(window.innerWidth - box.right)) + "px";
  });
  menu.addEventListener("click", (event) => {
    const choice = event.target.closest("button[data-layout]");
    if (!choice) return;
    menu.hidePopover();
    choose(choice.dataset.layout);
  });

  // Clicking into a pane (its terminal takes the focus) makes it the focused pane.
  panels.addEventListener("focusin", (event) => {
    const panel = event.target.closest(".terminal-panel");
    const tab = panel && terminals.tabs().find((t) => t.panel === panel);
    if (tab && tab !== terminals.active()) terminals.activate(tab);
  });

  // Ctrl+Alt+arrows move between panes; caught before xterm.js sees them, so they never reach the remote shell.
  window.addEventListener("keydown", (event) => {
    if (!event.ctrlKey || !event.altKey || event.shiftKey || event.metaKey || !ARROWS[event.key]) return;
    if (!root.contains(document.activeElement)) return;
    event.preventDefault();
    event.stopPropagation();
    move(ARROWS[event.key]);
  }, true);

  document.addEventListener("gatehouse:terminal-closed", () => {
    closed = true;
    if (terminals.tabs().length) return;
    if (broadcast.on) switchOff("panes");
    layout = "one";
    panes = [null];
    focus = 0;
    render();
  });
  phone.addEventListener("change", () => {
    const active = terminals.active();
    if (active) terminals.activate(active);
    else { resize(effective(), null); render(); }
  });

  // ---- Dragging a tab onto the terminals ----

  // Return where a drag over the terminals would drop: a side (or the middle) in one pane, a pane in split view.
  function target(event) {
    const box = panels.getBoundingClientRect();
    if (layout === "one") {
      const x = (event.clientX - box.left) / box.width, y = (event.clientY - box.top) / box.height;
      const sides = { left: x, right: 1 - x, top: y, bottom: 1 - y };
      const side = Object.keys(sides).reduce((a, b) => (sides[b] < sides[a] ? b : a));
      const half = { left: [0, 0, .5, 1], right: [.5, 0, .5, 1], top: [0, 0, 1, .5], bottom: [0, .5, 1, .5] };
      if (sides[side] > 0.3) return { side: "middle", box: [0, 0, box.width, box.height] };
      const [l, t, w, h] = half[side];
      return { side: side, box: [l * box.width, t * box.height, w * box.width, h * box.height] };
    }
    const index = panes.findIndex((tab, i) => {
      const cell = (tab ? tab.panel : empty(i)).getBoundingClientRect();
      return event.clientX >= cell.left && event.clientX < cell.right && event.clientY >= cell.top && event.clientY < cell.bottom;
    });
    if (index < 0) return null;
    const cell = (panes[index] ? panes[index].panel : empty(index)).getBoundingClientRect();
    return { pane: index, box: [cell.left - box.left, cell.top - box.top, cell.width, cell.height] };
  }

  // Show where the tab would go (null: nowhere).
  function showDrop(where) {
    if (!drop) drop = element("div", "panes-drop");
    if (!where) { drop.remove(); return; }
    const [left, top, width, height] = where.box;
    Object.assign(drop.style, { left: left + "px", top: top + "px", width: width + "px", height: height + "px" });
    if (!drop.isConnected) panels.append(drop);
  }

  // Drop a tab: onto a side of one pane, split with it there; onto a pane of a split view, show it there (two
  // panes swap tabs when it was shown already); onto the middle, just show it.
  function dropTab(tab, where) {
    if (where.side === "middle") {
      terminals.activate(tab);
      return;
    }
    if (where.side) {
      const current = panes[0];
      const other = tab === current ? hiddenTabs().find((t) => t !== tab) || null : current;
      want(where.side === "left" || where.side === "right" ? "columns" : "rows");
      layout = wanted;
      panes = where.side === "left" || where.side === "top" ? [tab, other] : [other, tab];
    } else {
      const from = panes.indexOf(tab);
      if (from >= 0) panes[from] = panes[where.pane];
      panes[where.pane] = tab;
    }
    placed.add(tab);
    terminals.activate(tab);
  }

  document.addEventListener("dragstart", (event) => {
    const chip = event.target.closest && event.target.closest(".tabbar .tab");
    dragged = chip && !phone.matches ? terminals.tabs().find((t) => t.tab === chip) || null : null;
    if (!dragged) return;
    event.dataTransfer.setData(TAB_TYPE, dragged.panel.id);
    event.dataTransfer.effectAllowed = "move";
  });
  panels.addEventListener("dragover", (event) => {
    if (!dragged || !event.dataTransfer.types.includes(TAB_TYPE)) return;
    const where = target(event);
    showDrop(where);
    if (!where) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
  });
  panels.addEventListener("dragleave", (event) => {
    if (!panels.contains(event.relatedTarget)) showDrop(null);
  });
  panels.addEventListener("drop", (event) => {
    if (!dragged || !event.dataTransfer.types.includes(TAB_TYPE)) return;
    event.preventDefault();
    const where = target(event), tab = dragged;
    showDrop(null);
    dragged = null;
    if (where) dropTab(tab, where);
  }, true);
  document.addEventListener("dragend", () => { dragged = null; showDrop(null); });

  terminals.setPlacer(place);
  resize(effective(), terminals.active());  // the remembered layout, ready for the first terminals
  render();
})();
