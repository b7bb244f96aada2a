// Keeping what a page shows once: a [data-print] button prints the page (its print styles keep only what matters).
// Copy buttons are dialogs.js's [data-copy].
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    if (event.target.closest("button[data-print]")) window.print();
  });
})();
