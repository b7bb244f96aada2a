// The device list: search as you type ("/" focuses it; arrows move, Enter opens a terminal, Esc clears),
// folders that stay folded as left, and the quick-connect palette (Ctrl+K; Ctrl+Shift+K inside a terminal).
// Opening a terminal is always a click on the device's .open-terminal button (static/js/terminal.js).
(function () {
  "use strict";

  const FOLDED_KEY = "gatehouse.folded";  // folder names the user folded
  let query = "";  // kept across swaps of the panel (a favourite toggled, a device saved)

  // Return the rows of the full list (not the copies under Favourites and Recent).
  function rows() {
    return Array.from(document.querySelectorAll("#device-list li.device[id]"));
  }

  // Say whether every word of the query is in the row's search text.
  function matches(row, words) {
    const text = row.dataset.search || "";
    return words.every((word) => text.includes(word));
  }

  // Show only the rows that match the query; open folders that hold matches; say how many match.
  function filter() {
    const list = document.getElementById("device-list");
    if (!list) return;
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    const all = rows();
    let shown = 0;
    all.forEach((row) => {
      row.hidden = words.length > 0 && !matches(row, words);
      if (!row.hidden) shown += 1;
    });
    list.querySelectorAll(".group.pinned").forEach((group) => { group.hidden = words.length > 0; });
    list.querySelectorAll("details.folder").forEach((folder) => {
      const any = folder.querySelector("li.device:not([hidden])");
      folder.hidden = words.length > 0 && !any;
      if (words.length) folder.open = true;
      else folder.open = !folded().includes(folder.dataset.folder);
    });
    const none = list.querySelector(".no-match");
    if (none) none.hidden = !(words.length && shown === 0);
    const status = document.getElementById("device-search-status");
    if (status) status.textContent = words.length ? `${shown} of ${all.length} devices match` : "";
  }

  // Return the names of the folders the user folded.
  function folded() {
    try { return JSON.parse(localStorage.getItem(FOLDED_KEY) || "[]"); } catch (e) { return []; }
  }

  // Remember a folder folded or unfolded (not while a search opened it).
  function rememberFold(folder) {
    if (query.trim()) return;
    const names = new Set(folded());
    if (folder.open) names.delete(folder.dataset.folder); else names.add(folder.dataset.folder);
    localStorage.setItem(FOLDED_KEY, JSON.stringify(Array.from(names)));
  }

  // Return the visible terminal buttons of the list, in order.
  function visibleButtons() {
    return Array.from(document.querySelectorAll("#device-list .open-terminal"))
      .filter((button) => button.offsetParent !== null);
  }

  // Move the focus to the next or previous visible device (from the search box: the first one).
  function move(from, step) {
    const buttons = visibleButtons();
    if (!buttons.length) return;
    const at = buttons.indexOf(from);
    const next = at < 0 ? (step > 0 ? 0 : buttons.length - 1) : at + step;
    if (next < 0) { document.getElementById("device-search")?.focus(); return; }
    buttons[Math.min(next, buttons.length - 1)].focus();
  }

  // Say whether the focus is where typed keys belong to something else (a field, a terminal, a dialog).
  function typingElsewhere(target) {
    return target.closest("input, textarea, select, [contenteditable], .xterm, dialog") !== null;
  }

  document.addEventListener("input", (event) => {
    if (event.target.id !== "device-search") return;
    query = event.target.value;
    filter();
  });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    // Ctrl+K first, wherever the focus is (the sidebar's search or list included), but inside a terminal, where
    // Ctrl+K is the shell's "kill line": there Ctrl+Shift+K.
    const paletteKey = (event.key === "k" || event.key === "K") && (event.ctrlKey || event.metaKey) && !event.altKey;
    if (paletteKey && (event.shiftKey || !target.closest(".xterm"))) {
      event.preventDefault();
      event.stopPropagation();
      palette.open();
      return;
    }
    if (target.id === "device-search") {
      if (event.key === "ArrowDown") { event.preventDefault(); move(null, 1); }
      else if (event.key === "Enter") {
        event.preventDefault();
        const first = visibleButtons().find((button) => button.closest("li.device[id]"));
        if (first) first.click();
      } else if (event.key === "Escape" && target.value) {
        event.preventDefault();
        target.value = query = "";
        filter();
      }
      return;
    }
    if (target.matches && target.matches("#device-list .open-terminal")) {
      if (event.key === "ArrowDown") { event.preventDefault(); move(target, 1); }
      else if (event.key === "ArrowUp") { event.preventDefault(); move(target, -1); }
      return;
    }
    if (event.key === "/" && !event.ctrlKey && !event.metaKey && !event.altKey && !typingElsewhere(target)) {
      const search = document.getElementById("device-search");
      if (search && search.offsetParent !== null) { event.preventDefault(); search.focus(); search.select(); }
    }
  }, true);  // capture: Ctrl+Shift+K reaches the palette before a terminal takes it

  document.addEventListener("toggle", (event) => {
    if (event.target.matches && event.target.matches("details.folder")) rememberFold(event.target);
  }, true);

  document.addEventListener("click", (event) => {
    if (event.target.closest("#quick-connect")) palette.open();
  });

  // As soon as htmx swapped a new panel in (before it settles), put the search back as it was.
  document.addEventListener("htmx:afterSwap", () => {
    const search = document.getElementById("device-search");
    if (!search) return;
    const hadFocus = document.activeElement === document.body;
    search.value = query;
    filter();  // also folds the new panel's folders as the user left them
    if (query && hadFocus) search.focus();
  });
  document.addEventListener("DOMContentLoaded", filter);

  // Rank a match for the palette: names that start with the first word, then names holding it, then the rest.
  function rank(name, words) {
    if (!words.length) return 0;
    return name.startsWith(words[0]) ? 0 : name.includes(words[0]) ? 1 : 2;
  }

  // ---- The quick-connect palette: a dialog over the same rows and the same search ----
  const palette = {
    dialog: null, input: null, list: null, picked: 0, found: [],

    // Build the dialog once.
    build() {
      const dialog = document.createElement("dialog");
      dialog.className = "palette";
      dialog.id = "palette";
      dialog.setAttribute("aria-label", "Quick connect");
      const input = document.createElement("input");
      input.type = "search";
      input.id = "palette-input";
      input.placeholder = "Connect to… (name, host, user, tag, folder)";
      input.setAttribute("aria-label", "Device to connect to");
      input.setAttribute("role", "combobox");
      input.setAttribute("aria-expanded", "true");
      input.setAttribute("aria-controls", "palette-list");
      input.autocomplete = "off";
      const list = document.createElement("ul");
      list.id = "palette-list";
      list.setAttribute("role", "listbox");
      list.setAttribute("aria-label", "Devices");
      dialog.append(input, list);
      document.body.append(dialog);
      input.addEventListener("input", () => { this.picked = 0; this.render(); });
      input.addEventListener("keydown", (event) => this.key(event));
      list.addEventListener("click", (event) => {
        const item = event.target.closest("li[data-index]");
        if (item) this.choose(Number(item.dataset.index));
      });
      dialog.addEventListener("close", () => { if (this.returnTo) this.returnTo.focus(); });
      Object.assign(this, { dialog, input, list });
    },

    // Open the palette with an empty query.
    open() {
      if (!rows().length) return;
      if (!this.dialog) this.build();
      if (this.dialog.open) return;
      this.returnTo = document.activeElement;
      this.input.value = "";
      this.picked = 0;
      this.render();
      this.dialog.showModal();
      this.input.focus();
    },

    // List the devices that match (at most 50), the picked one marked.
    render() {
      const words = this.input.value.toLowerCase().split(/\s+/).filter(Boolean);
      this.found = rows().filter((row) => matches(row, words))
        .map((row) => ({ row, name: row.querySelector(".open-terminal").dataset.deviceName.toLowerCase() }))
        .sort((a, b) => rank(a.name, words) - rank(b.name, words) || a.name.localeCompare(b.name))
        .slice(0, 50).map((entry) => entry.row);
      this.list.replaceChildren();
      if (!this.found.length) {
        const none = document.createElement("li");
        none.className = "none";
        none.textContent = "No device matches.";
        this.list.append(none);
        this.input.removeAttribute("aria-activedescendant");
        return;
      }
      this.picked = Math.max(0, Math.min(this.picked, this.found.length - 1));
      this.found.forEach((row, index) => {
        const item = document.createElement("li");
        item.id = `palette-item-${index}`;
        item.dataset.index = index;
        item.setAttribute("role", "option");
        item.setAttribute("aria-selected", index === this.picked ? "true" : "false");
        const name = document.createElement("span");
        name.textContent = row.querySelector(".open-terminal").dataset.deviceName;
        const addr = document.createElement("span");
        addr.className = "addr";
        addr.textContent = row.querySelector(".addr").textContent;
        item.append(name, addr);
        this.list.append(item);
      });
      this.input.setAttribute("aria-activedescendant", `palette-item-${this.picked}`);
      this.list.children[this.picked].scrollIntoView({ block: "nearest" });
    },

    // Arrows move, Enter connects, Esc closes.
    key(event) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        this.picked += event.key === "ArrowDown" ? 1 : -1;
        this.render();
      } else if (event.key === "Enter") {
        event.preventDefault();
        if (this.found.length) this.choose(this.picked);
      } else if (event.key === "Escape") {  // at once, not after a first Esc cleared the search field
        event.preventDefault();
        this.dialog.close();
      }
    },

    // Open a terminal to the chosen device.
    choose(index) {
      const row = this.found[index];
      this.returnTo = null;  // the new terminal takes the focus
      this.dialog.close();
      if (row) row.querySelector(".open-terminal").click();
    },
  };
})();
