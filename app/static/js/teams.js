// Teams page: the grant's name field suggests folders or tags as its kind says; focus lands where a change left it.
(function () {
  "use strict";

  // Point a grant form's name field at the suggestions of the chosen kind.
  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-grant-kind]")) return;
    const value = event.target.form.querySelector("input[list]");
    if (value) value.setAttribute("list", event.target.value === "tag" ? "tag-names" : "folder-names");
  });

  // Focus the element the panel names (a refused field, or the form next to what was just removed).
  function focusNamed() {
    const panel = document.getElementById("teams-panel");
    const target = panel && panel.dataset.focus && document.getElementById(panel.dataset.focus);
    if (target) target.focus();
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target.id === "teams-panel" || event.target.contains(document.getElementById("teams-panel"))) focusNamed();
  });
})();
