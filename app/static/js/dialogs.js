// Dialogs: one confirmation for every destructive action, the device drawer, the copy buttons.
(function () {
  "use strict";

  // ---- Confirmation: htmx buttons with hx-confirm and forms (or submit buttons) with data-confirm ----
  let answer = null;  // what to do when the open confirmation is accepted
  let asker = null;  // the button that asked, focused again when the dialog closes

  // Return the one confirmation dialog of the page.
  function confirmDialog() { return document.getElementById("confirm-dialog"); }

  // Ask question about what button does; call proceed only when the answer is yes (labelled yes, else by the button).
  function ask(question, button, proceed, yes) {
    const dialog = confirmDialog();
    if (!dialog) { proceed(); return; }
    dialog.querySelector(".confirm-question").textContent = question;
    const named = button && button.tagName === "BUTTON";  // hx-confirm may sit on a form: then plain "Confirm"
    // An icon button has no text: its accessible name says what it does.
    const label = named && (button.textContent.trim() || button.getAttribute("aria-label"));
    dialog.querySelector(".confirm-yes").textContent = yes || label || "Confirm";
    answer = proceed;
    asker = button;
    dialog.returnValue = "";
    dialog.showModal();
    dialog.querySelector(".confirm-no").focus();  // the safe choice is the default
  }

  // Scripts (the terminal tabs) ask through the same dialog.
  window.GatehouseConfirm = { ask: ask };

  document.addEventListener("htmx:confirm", function (event) {
    if (!event.detail.question) return;
    event.preventDefault();
    ask(event.detail.question, event.detail.elt, function () { event.detail.issueRequest(true); });
  });

  // A poll would replace the button being asked about: polls wait while the question is open.
  document.addEventListener("htmx:beforeRequest", function (event) {
    const dialog = confirmDialog();
    if (dialog && dialog.open && event.detail.elt.hasAttribute("data-poll")) event.preventDefault();
  });

  document.addEventListener("submit", function (event) {
    const form = event.target;
    const submitter = event.submitter;
    const question = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
    if (!question || form.dataset.confirmed === "yes") return;
    event.preventDefault();
    ask(question, submitter, function () {
      form.dataset.confirmed = "yes";
      form.requestSubmit(submitter);
    });
  }, true);

  document.addEventListener("close", function (event) {
    // The close event comes a task after the dialog hid: if a new question opened it meanwhile, it is that one's.
    if (event.target !== confirmDialog() || event.target.open) return;
    const proceed = event.target.returnValue === "confirm" ? answer : null;
    const button = asker;
    answer = asker = null;
    if (button && button.isConnected) button.focus();
    if (proceed) proceed();
  }, true);

  // ---- Drawer: a form in a <dialog class="drawer"> opens as soon as htmx puts it on the page ----
  let openerId = null;  // the Add/Edit button that opened the drawer (the panel is swapped, so kept by id)

  document.addEventListener("click", function (event) {
    const opener = event.target.closest("[data-opens-drawer]");
    if (opener) openerId = opener.id;
    if (event.target.closest("[data-drawer-close]")) event.target.closest("dialog").close();
  });

  // Give the focus back to the button that opened the drawer.
  function returnFocus() {
    const opener = openerId && document.getElementById(openerId);
    openerId = null;
    if (opener) opener.focus();
  }

  // Open a drawer that a swap just brought, focusing its first field (or the first one in error).
  function openDrawers(event) {
    const drawer = document.querySelector("dialog.drawer:not([open])");
    if (!drawer) {  // after a save the panel comes back without its drawer: the opener is in the new content
      const opener = openerId && document.getElementById(openerId);
      if (event && event.detail && opener && event.target.contains(opener)) returnFocus();
      return;
    }
    drawer.showModal();
    const invalid = drawer.querySelector(".field:has(.error) :is(input, select, textarea)");
    const first = invalid || drawer.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  }

  document.addEventListener("htmx:afterSettle", openDrawers);
  document.addEventListener("DOMContentLoaded", openDrawers);
  document.addEventListener("close", function (event) {
    if (!event.target.matches("dialog.drawer") || !event.target.isConnected) return;  // a swap removed it
    event.target.remove();  // typed secrets do not linger in the page
    returnFocus();
  }, true);

  // ---- Copy: a button with data-copy="selector" copies that element's text ----
  // Copy the text that button points at; say "Copied", or select it for Ctrl+C when copying is refused.
  function copyText(button) {
    const source = document.querySelector(button.dataset.copy);
    const status = button.parentElement.querySelector(".copy-status");
    if (!source) return;
    const text = (source.value !== undefined ? source.value : source.textContent).trim();
    function say(message) { if (status) status.textContent = message; }
    function selectIt() {
      if (source.select) { source.focus(); source.select(); } else {
        const range = document.createRange();
        range.selectNodeContents(source);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
      }
      return document.execCommand && document.execCommand("copy");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say("Copied"); },
        function () { say(selectIt() ? "Copied" : "Selected: press Ctrl+C"); });
    } else {
      say(selectIt() ? "Copied" : "Selected: press Ctrl+C");
    }
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-copy]");
    if (button) copyText(button);
  });
})();
