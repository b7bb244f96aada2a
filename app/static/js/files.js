// File manager: a side panel beside the shown terminal, listing its device's files over SFTP on the terminal's own
// SSH connection (routes: app/terminals/files.py; protocol: docs/protocol.md, "File manager"). Remote names are
// only ever set as text (textContent), never as HTML.
(function () {
  "use strict";

  const root = document.getElementById("terminals");
  const tools = root && root.querySelector(".term-tools");
  if (!root || !tools || !root.dataset.filesUrl) return;
  const STORE = "gatehouse-files";
  const folders = new Map();  // session id -> the folder last shown for it
  let session = null, tabName = "", folder = "", maxUploadMb = 0, busy = 0, loads = 0, shownPath = "";

  // Make an element with a class and a text (text only: names from the device never become HTML).
  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function button(className, text, label) {
    const node = element("button", className, text);
    node.type = "button";
    if (label) { node.setAttribute("aria-label", label); node.title = label; }
    return node;
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // ---- The panel, built once ----
  const toggle = button("bar-button files-toggle", "", "Files of this terminal's device (SFTP)");
  toggle.id = "files-toggle";
  toggle.setAttribute("aria-pressed", "false");
  toggle.setAttribute("aria-controls", "files-panel");
  toggle.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 6.5A1.5 1.5 0 0 1 4.5 5H9l2 2h8.5A1.5 ' +
    '1.5 0 0 1 21 8.5v9a1.5 1.5 0 0 1-1.5 1.5h-15A1.5 1.5 0 0 1 3 17.5z"/></svg><span>Files</span>';
  tools.prepend(toggle);

  const panel = element("aside", "files-panel");
  panel.id = "files-panel";
  panel.setAttribute("aria-label", "Files");
  panel.hidden = true;
  const head = element("div", "files-head");
  const title = element("h2", "files-title", "Files");
  const closeButton = button("files-close", "×", "Close the file panel");
  head.append(title, closeButton);
  const pathForm = element("form", "files-path");
  const upButton = button("files-up", "..", "Up to the parent folder");
  const pathInput = element("input");
  pathInput.type = "text";
  pathInput.name = "path";
  pathInput.autocomplete = "off";
  pathInput.spellcheck = false;
  pathInput.setAttribute("aria-label", "Folder on the device");
  const goButton = element("button", "files-go", "Go");
  goButton.type = "submit";
  pathForm.append(upButton, pathInput, goButton);
  const actions = element("div", "files-actions");
  const uploadButton = button("files-upload", "Upload…");
  const picker = element("input");
  picker.type = "file";
  picker.multiple = true;
  picker.hidden = true;
  picker.setAttribute("aria-label", "Files to upload");
  const folderButton = button("files-new-folder", "New folder");
  const refreshButton = button("files-refresh", "↻", "Read the folder again");
  actions.append(uploadButton, folderButton, refreshButton, picker);
  const message = element("p", "files-message");
  message.setAttribute("role", "status");
  const uploads = element("ul", "files-uploads");
  uploads.setAttribute("aria-label", "Uploads");
  const list = element("ul", "files-list");
  list.setAttribute("aria-label", "Folder contents");
  const hint = element("p", "files-hint", "Drop files here to upload them to this folder.");
  panel.append(head, pathForm, actions, message, uploads, list, hint);
  root.append(panel);

  // ---- Small formats: sizes and times (the time with its zone, as static/js/times.js writes them) ----
  function two(n) { return String(n).padStart(2, "0"); }

  function localTime(iso) {
    const date = new Date(iso);
    if (isNaN(date)) return "";
    const minutes = -date.getTimezoneOffset();
    const zone = (minutes < 0 ? "-" : "+") + two(Math.floor(Math.abs(minutes) / 60)) + ":" +
      two(Math.abs(minutes) % 60);
    return date.getFullYear() + "-" + two(date.getMonth() + 1) + "-" + two(date.getDate()) + " " +
      two(date.getHours()) + ":" + two(date.getMinutes()) + " " + zone;
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "";
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    if (unit === 0) return bytes + (bytes === 1 ? " byte" : " bytes");
    return value.toFixed(value < 10 ? 1 : 0) + " " + units[unit];
  }

  function join(base, name) { return (base.endsWith("/") ? base : base + "/") + name; }

  function say(text, isError) {
    message.textContent = text || "";
    message.classList.toggle("is-error", !!isError);
    message.setAttribute("role", isError ? "alert" : "status");
  }

  // ---- Talking to the server ----
  // The routes' address comes from the page (url_for), with the session put in.
  function base(of) { return root.dataset.filesUrl.replace("SESSION", encodeURIComponent(of || session)); }

  // Read the error sentence of a refused request (the app answers JSON {message}), else a plain one.
  function reason(status, text) {
    try { return JSON.parse(text).message || ("Refused (" + status + ")."); } catch (err) {
      return status ? "Refused (" + status + ")." : "The server could not be reached.";
    }
  }

  function request(method, url, body) {
    const headers = { Accept: "application/json", "X-CSRFToken": csrfToken() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, { method: method, headers: headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) })
      .then((response) => response.text().then((text) => {
        if (!response.ok) throw new Error(reason(response.status, text));
        return JSON.parse(text);
      }), (err) => { throw new Error("The server could not be reached."); });
  }

  function setEnabled(on) {
    [upButton, pathInput, goButton, uploadButton, folderButton, refreshButton].forEach((b) => { b.disabled = !on; });
  }

  // Show a folder of the shown terminal's device (its home when path is empty).
  function load(path) {
    if (!session) return;
    const asked = session, turn = ++loads;
    busy += 1;
    panel.setAttribute("aria-busy", "true");
    request("GET", base() + "?path=" + encodeURIComponent(path || "")).then((data) => {
      if (asked !== session || turn !== loads) return;  // a later load (or another tab) answers instead
      folder = data.path;
      folders.set(session, folder);
      maxUploadMb = data.max_upload_mb;
      // A path being typed stays as typed: the answer only fills the field when nobody is editing it.
      if (document.activeElement !== pathInput || pathInput.value === shownPath) pathInput.value = folder;
      shownPath = folder;
      upButton.disabled = data.parent === null;
      render(data);
      say(data.truncated ? "Only the first " + data.entries.length + " entries are shown." : "");
    }, (err) => {
      if (asked !== session || turn !== loads) return;
      say(err.message, true);
      if (!folder) { list.replaceChildren(); setEnabled(false); refreshButton.disabled = false; }
    }).finally(() => { busy -= 1; if (!busy) panel.removeAttribute("aria-busy"); });
  }

  // Fill the list: one row per entry, folders first; a folder opens, a file downloads.
  function render(data) {
    setEnabled(true);
    upButton.disabled = data.parent === null;
    const rows = data.entries.map(row);
    if (!rows.length) rows.push(element("li", "files-empty", "This folder is empty."));
    list.replaceChildren(...rows);
    list.dataset.path = data.path;  // which folder the list shows (tests wait for it)
  }

  function row(entry) {
    const item = element("li", "files-entry");
    item.dataset.type = entry.type;
    const opens = entry.type === "folder" || entry.type === "link to folder";
    let name;
    if (opens) {
      name = button("files-name", entry.name);
      name.addEventListener("click", () => load(entry.path));
    } else {
      name = element("a", "files-name", entry.name);
      name.href = base() + "/content?path=" + encodeURIComponent(entry.path);
      name.setAttribute("download", "");
      name.title = "Download " + entry.name;
    }
    const facts = element("span", "files-facts");
    facts.append(element("span", "files-type", entry.type));
    if (!opens && entry.size !== null) {
      const bytes = element("span", "files-size", size(entry.size));
      bytes.title = entry.size + " bytes";
      facts.append(bytes);
    }
    if (entry.modified) {
      const time = element("time", "files-time", localTime(entry.modified));
      time.dateTime = entry.modified;
      time.title = entry.modified.slice(0, 19).replace("T", " ") + " UTC";
      facts.append(time);
    }
    const tools = element("span", "files-row-tools");
    const rename = button("files-rename", "Rename", "Rename " + entry.name);
    const remove = button("files-delete", "Delete", "Delete " + entry.name);
    rename.addEventListener("click", () => askName(item, entry.name, "Rename",
      (value) => request("POST", base() + "/rename", { path: entry.path, name: value })));
    remove.addEventListener("click", () => askDelete(entry, remove));
    tools.append(rename, remove);
    item.append(name, tools, facts);
    return item;
  }

  // Ask for a name in place (a new folder, or a new name): Enter saves, Esc gives up.
  function askName(where, current, verb, send) {
    const existing = panel.querySelector(".files-name-form");
    if (existing) existing.remove();
    const form = element("form", "files-name-form");
    const input = element("input");
    input.type = "text";
    input.value = current;
    input.setAttribute("aria-label", verb === "Rename" ? "New name for " + current : "Name of the new folder");
    const save = element("button", "files-save", verb === "Rename" ? "Rename" : "Create");
    save.type = "submit";
    const cancel = button("files-cancel", "Cancel");
    form.append(input, save, cancel);
    cancel.addEventListener("click", () => form.remove());
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.preventDefault(); form.remove(); }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send(input.value).then(() => { form.remove(); say(""); load(folder); }, (err) => say(err.message, true));
    });
    if (where === actions) actions.after(form); else where.append(form);
    input.focus();
    input.select();
  }

  // Delete after the page's one confirmation dialog (Cancel is the default).
  function askDelete(entry, asker) {
    const what = entry.type === "folder" ? "the folder " : "";
    const ask = window.GatehouseConfirm ? window.GatehouseConfirm.ask : (q, b, proceed) => proceed();
    ask("Delete " + what + entry.name + " on the device? This cannot be undone.", asker, () => {
      request("POST", base() + "/delete", { path: entry.path })
        .then(() => { say("Deleted " + entry.name + "."); load(folder); }, (err) => say(err.message, true));
    }, "Delete");
  }

  // ---- Uploads: each file streamed as the raw body of one PUT, with its own progress bar; one at a time ----
  let queue = Promise.resolve();

  function upload(files) {
    if (!session || !folder) return;
    [...files].forEach((file) => {
      const item = element("li", "files-upload-row");
      const label = element("span", "files-upload-name", file.name);
      const bar = element("progress");
      bar.max = file.size || 1;
      bar.value = 0;
      bar.setAttribute("aria-label", "Upload of " + file.name);
      const state = element("span", "files-upload-state", "waiting");
      item.append(label, bar, state);
      uploads.append(item);
      if (maxUploadMb && file.size > maxUploadMb * 1024 * 1024) {
        fail(item, state, "Larger than the upload limit of " + maxUploadMb + " MB; not sent.");
        return;
      }
      const target = join(folder, file.name), to = session;
      queue = queue.then(() => send(file, target, to, bar, state, item));
    });
  }

  function fail(item, state, text) {
    item.classList.add("is-error");
    state.textContent = text;
    state.setAttribute("role", "alert");
  }

  function send(file, target, to, bar, state, item) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", base(to) + "/content?path=" + encodeURIComponent(target));
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = (event) => {
        bar.value = event.loaded;
        state.textContent = size(event.loaded) + " of " + size(file.size);
      };
      xhr.onload = () => {
        if (xhr.status === 201) {
          bar.value = bar.max;
          state.textContent = "uploaded";
          item.classList.add("is-done");
          if (to === session) load(folder);
        } else fail(item, state, reason(xhr.status, xhr.responseText));
        resolve();
      };
      xhr.onerror = () => { fail(item, state, "The upload was interrupted."); resolve(); };
      state.textContent = "sending";
      xhr.send(file);
    });
  }

  // ---- Following the shown terminal ----
  function follow(detail) {
    const next = detail && detail.session;
    tabName = detail ? detail.name : "";
    title.textContent = tabName ? "Files of " + tabName : "Files";
    panel.setAttribute("aria-label", title.textContent);
    if (next === session && folder) return;
    session = next || null;
    folder = "";
    list.replaceChildren();
    uploads.replaceChildren();
    setEnabled(false);
    if (!session) {
      say(detail ? "Waiting for the terminal to connect…" : "Open a terminal to see its files.");
      return;
    }
    say("Reading the folder…");
    if (!panel.hidden) load(folders.get(session) || "");
  }

  function show(open) {
    panel.hidden = !open;
    root.classList.toggle("files-open", open);
    toggle.setAttribute("aria-pressed", String(open));
    try { localStorage.setItem(STORE, open ? "open" : "closed"); } catch (err) { /* remembered for this page only */ }
    if (open && session && !folder) load(folders.get(session) || "");
    window.dispatchEvent(new Event("resize"));  // the terminal fits the width left
  }

  document.addEventListener("gatehouse:terminal-shown", (event) => follow(event.detail));
  toggle.addEventListener("click", () => show(panel.hidden));
  closeButton.addEventListener("click", () => { show(false); toggle.focus(); });
  upButton.addEventListener("click", () => {
    if (folder && folder !== "/") load(folder.replace(/\/[^/]*\/?$/, "") || "/");
  });
  pathForm.addEventListener("submit", (event) => { event.preventDefault(); load(pathInput.value); });
  refreshButton.addEventListener("click", () => load(folder));
  uploadButton.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => { upload(picker.files); picker.value = ""; });
  folderButton.addEventListener("click", () => askName(actions, "", "Create",
    (value) => request("POST", base() + "/folder", { path: folder, name: value })));
  panel.addEventListener("dragover", (event) => {
    if (!session || !folder || !event.dataTransfer || ![...event.dataTransfer.types].includes("Files")) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    panel.classList.add("files-dragging");
  });
  panel.addEventListener("dragleave", (event) => {
    if (!panel.contains(event.relatedTarget)) panel.classList.remove("files-dragging");
  });
  panel.addEventListener("drop", (event) => {
    panel.classList.remove("files-dragging");
    if (!session || !folder || !event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    upload(event.dataTransfer.files);
  });
  const active = window.GatehouseTerminals && window.GatehouseTerminals.active();
  follow(active ? { tab: active, session: active.session || null, name: active.name } : null);
  let remembered = null;
  try { remembered = localStorage.getItem(STORE); } catch (err) { /* none */ }
  show(remembered === "open");
})();
