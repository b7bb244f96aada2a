// The import form: a file over the size limit is refused before it is sent (the server refuses it too).
(function () {
  "use strict";
  const form = document.getElementById("import-form");
  if (!form) return;
  const input = document.getElementById("import-file");
  const error = document.getElementById("import-error");
  const limit = Number(form.dataset.maxBytes);

  function say(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  input.addEventListener("change", function () {
    const file = input.files[0];
    if (file && file.size > limit) {
      say(`${file.name} is ${Math.ceil(file.size / 1024)} KiB; at most ${Math.floor(limit / 1024)} KiB are imported ` +
          "at once. Split it into smaller files.");
      input.value = "";
    } else {
      say("");
    }
  });
})();
