// The device list's rows and sidebar: the tags that fit a row (the others counted as "+N"), each row's menu of
// actions (⋯: Enter or Space opens it, arrows move, Esc closes), the focus kept on the row after an action swapped
// the panel, and the handle on the sidebar's right edge that widens it (drag or ←/→; remembered; double-click resets).
(function () {
  "use strict";

  // ---- Tags: chips that do not fit the row's line are hidden and counted in its "+N" ----

  // Hide the chips of one row that wrapped or reach past its end; show how many in "+N".
  function fitTags(tags) {
    const box = tags.getBoundingClientRect();
    if (!box.width && !box.height) return;  // a folded folder or a filtered row: fitted when it shows
    const more = tags.nextElementSibling;
    let over = 0;
    Array.from(tags.children).forEach((chip) => {
      const at = chip.getBoundingClientRect();
      const hide = at.top > box.top + 1 || at.right > box.right + 0.5;
      chip.classList.toggle("over", hide);
      if (hide) over += 1;
    });
    if (more && more.classList.contains("more")) {
      more.textContent = over ? "+" + over : "";
      more.hidden = !over;
    }
  }

  // Refit a row whenever its tags' box changes size (a wider sidebar, a folder opened, a search cleared).
  const watcher = "ResizeObserver" in window
    ? new ResizeObserver((entries) => entries.forEach((entry) => fitTags(entry.target))) : null;

  // Watch the tags of the list now on the page (a swapped-in panel brings new ones).
  function watchTags() {
    const all = document.querySelectorAll("#device-list .device .tags");
    if (!watcher) { all.forEach(fitTags); return; }
    watcher.disconnect();
    all.forEach((tags) => watcher.observe(tags));
  }

  // ---- Row menus: popovers opened by their ⋯ button ----
  let returnTo = null;  // the menu button to focus again after an action that swapped the panel or asked a question

  // Return the items of a menu.
  function items(menu) {
    return Array.from(menu.querySelectorAll("[role=menuitem]"));
  }

  // Place a menu under its button, right edges aligned, or over it when the screen ends below.
  function place(menu) {
    const button = document.getElementById(menu.dataset.menuButton);
    if (!button) return;
    const box = button.getBoundingClientRect();
    const height = menu.offsetHeight || items(menu).length * 34 + 10;
    const below = box.bottom + 2 + height <= window.innerHeight - 4;
    menu.style.top = Math.round(below ? box.bottom + 2 : Math.max(4, box.top - 2 - height)) + "px";
    menu.style.left = Math.round(Math.max(4, Math.min(box.right - Math.max(menu.offsetWidth, 180),
                                                        window.innerWidth - 4 - Math.max(menu.offsetWidth, 180)))) + "px";
  }

  document.addEventListener("beforetoggle", (event) => {
    if (event.target.matches && event.target.matches(".row-actions") && event.newState === "open") place(event.target);
  }, true);

  document.addEventListener("toggle", (event) => {
    const menu = event.target;
    if (!menu.matches || !menu.matches(".row-actions")) return;
    const button = document.getElementById(menu.dataset.menuButton);
    if (button) button.setAttribute("aria-expanded", String(event.newState === "open"));
    if (event.newState === "open") {
      place(menu);  // now that its size is known
      const first = items(menu)[0];
      if (first) first.focus();
    } else if (button && (document.activeElement === document.body || menu.contains(document.activeElement))) {
      button.focus();
    }
  }, true);

  // Move the focus within an open menu: arrows (round), Home, End; Esc closes it (and nothing else, such as the
  // phone's drawer of the list).
  document.addEventListener("keydown", (event) => {
    const menu = event.target.closest && event.target.closest(".row-actions");
    if (!menu) {
      const button = event.target.closest && event.target.closest(".row-menu[popovertarget]");
      if (button && (event.key === "ArrowDown" || event.key === "ArrowUp")) {  // as on a menu button elsewhere
        event.preventDefault();
        document.getElementById(button.getAttribute("popovertarget")).showPopover();
      }
      return;
    }
    const all = items(menu);
    const at = all.indexOf(document.activeElement);
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: all.length - 1 }[event.key];
    if (to !== undefined) {
      event.preventDefault();
      event.stopPropagation();  // the list's own arrows (static/js/devices.js) move between rows
      all[(to + all.length) % all.length].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      menu.hidePopover();
    }
  }, true);

  // Tab (or a click elsewhere) leaves a menu: it closes.
  document.addEventListener("focusout", (event) => {
    const menu = event.target.closest && event.target.closest(".row-actions");
    if (menu && menu.matches(":popover-open") && !(event.relatedTarget && menu.contains(event.relatedTarget))) {
      menu.hidePopover();
    }
  });

  // An item chosen: close its menu; the focus goes back to the row's button once the panel or a question is done.
  document.addEventListener("click", (event) => {
    const item = event.target.closest && event.target.closest(".row-actions [role=menuitem]");
    if (!item) return;
    const menu = item.closest(".row-actions");
    returnTo = menu.dataset.menuButton;
    if (menu.matches(":popover-open")) menu.hidePopover();
  });

  // Put the focus back on the row's menu button (or, when the row is gone, on the search or Add device).
  function refocus() {
    if (!returnTo || document.querySelector("dialog[open]")) return;
    const here = document.activeElement;  // in a closed dialog or a hidden menu, the focus is nowhere to be seen
    if (here && here !== document.body && here.getClientRects().length) { returnTo = null; return; }
    const target = document.getElementById(returnTo) || document.getElementById("device-search")
      || document.getElementById("add-device");
    returnTo = null;
    if (target) target.focus();
  }

  document.addEventListener("close", (event) => {
    // A question answered yes: the focus waits for the new panel. Otherwise (Cancel, Esc, a drawer closed) at once.
    if (event.target.id === "confirm-dialog" && event.target.returnValue === "confirm") return;
    if (event.target.matches && event.target.matches("dialog")) setTimeout(refocus, 0);
  }, true);

  // Say whether an htmx event is about the device panel (not, say, a poll elsewhere on the page).
  function aboutPanel(event) {
    const panel = document.getElementById("device-panel");
    return !!panel && (panel.contains(event.target) || event.target.contains(panel));
  }

  document.addEventListener("htmx:afterSettle", (event) => {
    if (!aboutPanel(event)) return;
    watchTags();
    setTimeout(refocus, 0);  // after static/js/dialogs.js opened a drawer or gave the focus back
  });

  // An open row menu follows its button when the list scrolls.
  document.addEventListener("scroll", (event) => {
    if (event.target.id !== "sidebar") return;
    document.querySelectorAll("#sidebar .row-actions:popover-open").forEach(place);
  }, true);

  // ---- The handle on the sidebar's right edge ----
  const WIDTH_KEY = "gatehouse-sidebar-width";
  const MIN = 240, DEFAULT = 320, STEP = 16;

  // Read the remembered width (null when none or when storage is refused).
  function remembered() {
    try { return Number(localStorage.getItem(WIDTH_KEY)) || null; } catch (err) { return null; }
  }

  // Remember the width for this browser; null forgets it.
  function remember(width) {
    try {
      if (width === null) localStorage.removeItem(WIDTH_KEY); else localStorage.setItem(WIDTH_KEY, String(width));
    } catch (err) { /* storage refused: the width lasts for this page only */ }
  }

  // The widest the sidebar may be: half of the window (never less than the narrowest).
  function widest() {
    return Math.max(MIN, Math.floor(window.innerWidth / 2));
  }

  // Put a focusable separator on the sidebar's right edge; return it.
  function makeHandle(sidebar) {
    const handle = document.createElement("div");
    handle.className = "sidebar-handle";
    handle.tabIndex = 0;
    handle.title = "Drag to widen the device list (or ←/→); double-click for the usual width";
    Object.entries({ role: "separator", "aria-orientation": "vertical", "aria-controls": "sidebar",
                     "aria-label": "Width of the device list", "aria-valuemin": String(MIN) })
      .forEach(([name, value]) => handle.setAttribute(name, value));
    sidebar.after(handle);
    return handle;
  }

  // Build the handle, give the sidebar its remembered width, and let pointer and keys change it.
  function setUpHandle() {
    const workspace = document.getElementById("workspace");
    const sidebar = document.getElementById("sidebar");
    if (!workspace || !sidebar) return;
    const handle = makeHandle(sidebar);

    // Give the sidebar a width within bounds; remember it when asked.
    function apply(width, keep) {
      const size = Math.round(Math.min(widest(), Math.max(MIN, width)));
      workspace.style.setProperty("--sidebar-width", size + "px");
      handle.setAttribute("aria-valuenow", String(size));
      handle.setAttribute("aria-valuemax", String(widest()));
      handle.setAttribute("aria-valuetext", size + " pixels");
      if (keep) remember(size);
      return size;
    }

    let width = apply(remembered() || DEFAULT, false);
    handle.addEventListener("keydown", (event) => {
      const step = event.shiftKey ? STEP * 4 : STEP;
      const to = { ArrowLeft: width - step, ArrowRight: width + step, Home: MIN, End: widest() }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      width = apply(to, true);
    });
    handle.addEventListener("dblclick", () => { width = apply(DEFAULT, false); remember(null); });
    handle.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      event.preventDefault();
      handle.setPointerCapture(event.pointerId);
      handle.classList.add("dragging");
    });
    handle.addEventListener("pointermove", (event) => {
      if (!handle.classList.contains("dragging")) return;
      width = apply(event.clientX - sidebar.getBoundingClientRect().left, false);
    });
    const drop = () => {
      if (!handle.classList.contains("dragging")) return;
      handle.classList.remove("dragging");
      width = apply(width, true);
    };
    handle.addEventListener("pointerup", drop);
    handle.addEventListener("pointercancel", drop);
    window.addEventListener("resize", () => { width = apply(remembered() || width, false); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    watchTags();
    setUpHandle();
  });
})();
