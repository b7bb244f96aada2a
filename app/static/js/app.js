// Small glue for htmx pages: CSRF header, credential fields of the device form.
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });

  // Show only the credential fields that belong to the chosen authentication.
  function syncCredentialFields(root) {
    root.querySelectorAll("form.device-form").forEach(function (form) {
      const select = form.querySelector('select[name="auth_type"]');
      if (!select) return;
      form.querySelectorAll("fieldset.cred").forEach(function (fieldset) {
        fieldset.hidden = fieldset.dataset.for !== select.value;
      });
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches('form.device-form select[name="auth_type"]')) {
      syncCredentialFields(document);
    }
  });
  document.addEventListener("htmx:afterSettle", function () { syncCredentialFields(document); });
  document.addEventListener("DOMContentLoaded", function () { syncCredentialFields(document); });

  // Audit panel: a dialog over the page (terminals keep running). Its content polls by itself;
  // emptying it on close removes the polled element, which ends the polling.
  function auditDialog() { return document.getElementById("audit-dialog"); }

  document.addEventListener("htmx:afterSwap", function (event) {
    const dialog = auditDialog();
    if (dialog && event.detail.target.id === "audit-dialog-body" && !dialog.open) dialog.showModal();
  });
  // A tab chosen in the panel keeps the keyboard on the tabs: focus goes to the new current one.
  document.addEventListener("htmx:afterSwap", function (event) {
    const source = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (event.detail.target.id !== "audit-dialog-body" || !source || !source.matches("[data-tab]")) return;
    const current = document.querySelector("#audit-dialog-body [data-tab][aria-current]");
    if (current) current.focus();
  });
  // The panel shows why a review was not recorded when the trail cannot be written (503 is not swapped by default).
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 503 && event.detail.target.id === "audit-dialog-body") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-close-dialog]")) auditDialog().close();
  });
  document.addEventListener("close", function (event) {
    if (event.target === auditDialog()) document.getElementById("audit-dialog-body").replaceChildren();
  }, true);

  // The header's account menu (phones; a popover, so Esc and a tap beside it close it and the focus comes back to its
  // button): the button says whether it is open; past the phone width its content stands in the bar, so it closes.
  const accountMenu = document.getElementById("account-menu");
  const accountButton = document.getElementById("account-button");
  const narrow = window.matchMedia("(max-width: 700px)");
  if (accountMenu && accountButton) {
    accountMenu.addEventListener("toggle", function (event) {
      accountButton.setAttribute("aria-expanded", String(event.newState === "open"));
    });
    narrow.addEventListener("change", function () {
      if (!narrow.matches && accountMenu.matches(":popover-open")) accountMenu.hidePopover();
    });
  }

  // No polls from a hidden tab; catch up at once when it is shown again.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (document.hidden && event.detail.elt.hasAttribute("data-poll")) event.preventDefault();
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      document.querySelectorAll("[data-poll]").forEach(function (element) { htmx.trigger(element, "refresh"); });
    }
  });
})();
