// Light or dark: the system's choice (prefers-color-scheme) unless the header's switch says otherwise.
// Loaded in <head> without defer, so data-theme is set before the first paint; the stylesheet does the rest.
// Terminals ask terminalTheme() for their palette and listen for "gatehouse:theme" to follow a change.
(function () {
  "use strict";

  const KEY = "gatehouse-theme";  // "light", "dark"; absent: follow the system
  const root = document.documentElement;
  const system = window.matchMedia("(prefers-color-scheme: dark)");

  const PALETTES = {
    dark: { background: "#0b0f14", foreground: "#d8dee9", cursor: "#d8dee9", cursorAccent: "#0b0f14",
      selectionBackground: "#3b4a61" },
    light: { background: "#fbfbfc", foreground: "#1d2330", cursor: "#1d2330", cursorAccent: "#fbfbfc",
      selectionBackground: "#b9d3fb", black: "#1d2330", red: "#b42323", green: "#1f6b2c", yellow: "#8a5200",
      blue: "#1a5fd0", magenta: "#8e2fa0", cyan: "#0b6a78", white: "#6b7480", brightBlack: "#566270",
      brightRed: "#c9302c", brightGreen: "#2a7d37", brightYellow: "#9a6000", brightBlue: "#2f6fe0",
      brightMagenta: "#a03db3", brightCyan: "#137d8c", brightWhite: "#1d2330" },
  };

  function chosen() {
    try { return localStorage.getItem(KEY) || "auto"; } catch (err) { return "auto"; }
  }

  function current() {
    const choice = chosen();
    return choice === "auto" ? (system.matches ? "dark" : "light") : choice;
  }

  function apply() {
    const choice = chosen();
    if (choice === "auto") delete root.dataset.theme; else root.dataset.theme = choice;
    document.dispatchEvent(new CustomEvent("gatehouse:theme", { detail: { theme: current() } }));
  }

  function choose(choice) {
    try {
      if (choice === "auto") localStorage.removeItem(KEY); else localStorage.setItem(KEY, choice);
    } catch (err) { /* storage refused: the choice lasts for this page only */ }
    apply();
  }

  window.GatehouseTheme = { current: current, terminalTheme: () => PALETTES[current()] };
  apply();
  system.addEventListener("change", apply);

  // The switch in the header: a select of auto / light / dark.
  document.addEventListener("DOMContentLoaded", function () {
    const select = document.getElementById("theme-switch");
    if (!select) return;
    select.value = chosen();
    select.addEventListener("change", function () { choose(select.value); });
  });
})();
