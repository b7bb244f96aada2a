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
})();
