// Coming back to open sessions (docs/protocol.md, Resuming): those this window had come back as tabs when the
// page loads (a reload, a visit to another page); those waiting elsewhere are offered with their age.
(function () {
  "use strict";

  const root = document.getElementById("terminals");
  const terminals = window.GatehouseTerminals;
  if (!root || !terminals || !window.GatehouseLink) return;
  const panels = root.querySelector(".panels");

  // Make an element with a class and a text.
  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  // Say a duration in milliseconds as m:ss.
  function clock(ms) {
    const seconds = Math.max(0, Math.round(ms / 1000));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }

  // The user's open sessions, as the server lists them, come back: those this window had (a reload) as tabs at once;
  // those nobody has now (detached elsewhere: another tab, another browser) on the user's word, with their age.
  const offer = element("div", "resume-offer");
  offer.setAttribute("role", "status");
  offer.hidden = true;
  panels.before(offer);

  function restore() {
    const url = "/terminals/open?window=" + encodeURIComponent(window.GatehouseLink.windowId());
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : { sessions: [] }))
      .then((data) => {
        const open = terminals.tabs();
        const fresh = data.sessions.filter((s) => !open.some((t) => t.session === s.session || t.restored === s.session));
        fresh.filter((s) => s.here).forEach(restoreOne);
        offerDetached(fresh.filter((s) => !s.here && s.detached));
      })
      .catch(() => { /* the page still opens new terminals */ });
  }

  // Make the tab of one listed session and resume it.
  function restoreOne(listed) {
    const tab = terminals.openTab(listed.name, listed.ws_url || "");
    tab.restored = listed.session;
    if (!terminals.active()) terminals.activate(tab);
    tab.resume(listed.resume_url);
  }

  // Say how many sessions wait for a resume and since when; one button brings them all here.
  function offerDetached(waiting) {
    offer.hidden = !waiting.length;
    if (!waiting.length) return;
    const oldest = Math.min(...waiting.map((s) => Date.parse(s.detached_at)));
    const soonest = Math.min(...waiting.map((s) => Date.parse(s.resume_until)));
    const text = (waiting.length === 1 ? "1 session of yours waits" : waiting.length + " sessions of yours wait") +
      " to be resumed (" + waiting.map((s) => s.name).join(", ") + "; detached " + clock(Date.now() - oldest) +
      " ago, " + (waiting.length === 1 ? "it ends" : "the first ends") + " in " + clock(soonest - Date.now()) + ").";
    const button = element("button", "small", waiting.length === 1 ? "Resume it" : "Resume them");
    button.type = "button";
    button.addEventListener("click", () => { offer.hidden = true; waiting.forEach(restoreOne); });
    offer.replaceChildren(element("span", "", text), button);
  }
  restore();
})();
