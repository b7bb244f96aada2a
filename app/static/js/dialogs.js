// Dialogs: one confirmation for every destructive action, the device drawer, the copy buttons.
(function () {
  "use strict";

  // ---- Confirmation: htmx buttons with hx-confirm and forms (or submit buttons) with data-confirm ----
  let answer = null;  // what to do when the open confirmation is accepted
  let asker = null;  // the button that asked, focused again when the dialog closes

  function confirmDialog() { return document.getElementById("confirm-dialog"); }

  function ask(question, button, proceed) {
    const dialog = confirmDialog();
    if (!dialog) { proceed(); return; }
    dialog.querySelector(".confirm-question").textContent = question;
    dialog.querySelector(".confirm-yes").textContent =
      (button && (button.dataset.confirmLabel || button.textContent.trim())) || "Confirm";
    answer = proceed;
    asker = button;
    dialog.returnValue = "";
    dialog.showModal();
    dialog.querySelector(".confirm-no").focus();  // the safe choice is the default
  }

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
    if (event.target !== confirmDialog()) return;
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

  function returnFocus() {
    const opener = openerId && document.getElementById(openerId);
    openerId = null;
    if (opener) opener.focus();
  }

  function openDrawers() {
    const drawer = document.querySelector("dialog.drawer:not([open])");
    if (!drawer) {
      if (openerId && !document.querySelector("dialog.drawer[open]")) returnFocus();  // saved: the drawer is gone
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
