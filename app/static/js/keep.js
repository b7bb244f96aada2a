// Keeping what a page shows once: [data-copy] buttons copy their text, [data-print] buttons print the page.
(function () {
  "use strict";

  function say(button, words) {
    const status = button.parentElement.querySelector(".copy-status");
    if (status) status.textContent = words;
  }

  // Over plain http on another host than localhost the Clipboard API is missing: a hidden textarea and the
  // older copy command still work there.
  function copyByHand(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "copy-buffer";
    document.body.appendChild(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return copyByHand(text); });
    }
    return copyByHand(text);
  }

  document.addEventListener("click", function (event) {
    const copier = event.target.closest("button[data-copy]");
    if (copier) {
      copy(copier.dataset.copy).then(function () { say(copier, "Copied."); },
                                     function () { say(copier, "Copying failed: select the text and copy it."); });
      return;
    }
    if (event.target.closest("button[data-print]")) window.print();
  });
})();
