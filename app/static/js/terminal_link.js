// The websocket of one terminal, and its way back: a socket that goes quiet or drops is replaced by a resume of
// the same session (docs/protocol.md, "Resuming"), with retries that back off, while the server keeps it.
(function () {
  "use strict";

  const PING_AFTER = 5000;      // this long without a frame: ask the server for a pong
  const QUIET_AFTER = 5000;     // and this long after the ping without any frame: the socket is lost
  const RETRY_FIRST = 500, RETRY_MAX = 10000;  // back-off between reconnection attempts
  const MAX_QUEUED = 4096;      // keystrokes kept while reconnecting, sent in order once resumed
  const PASTE_CHUNK = 32 * 1024; // large pastes travel as several frames, well under the server's limit

  // The page's own id for this browser window (kept across a reload, not shared with other windows).
  function windowId() {
    try {
      let id = sessionStorage.getItem("gatehouse-window");
      if (!id) {
        id = Math.random().toString(36).slice(2) + Date.now().toString(36);
        sessionStorage.setItem("gatehouse-window", id);
      }
      return id;
    } catch (err) { return ""; }
  }

  // Same origin as the page, whatever scheme and host the server thought it had.
  function wsUrl(path, query) {
    const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
    return base + new URL(path, location.href).pathname + "?" + new URLSearchParams(query).toString();
  }

  class Link {
    // handlers: output(bytes), message(object), state(name, info); size() returns {cols, rows}.
    constructor(handlers) {
      this.handlers = handlers;
      this.socket = null;
      this.session = null;       // the session's id, once the server named it
      this.resumeUrl = null;
      this.resumeSeconds = 0;
      this.offset = 0;           // output bytes received: where a resume picks up
      this.queue = [];           // keystrokes typed while reconnecting
      this.queued = 0;
      this.dropped = 0;
      this.final = false;        // the server said the session ended (or moved): no reconnecting
      this.timer = setInterval(() => this.check(), 1000);
    }

    // Open a new session on a device's websocket.
    open(path) {
      this.final = false;
      this.session = null;
      this.offset = 0;
      this.attach(wsUrl(path, { ...this.handlers.size(), window: windowId() }), "connecting");
    }

    // Attach to a session the server keeps (a restored tab: offset 0 replays the kept output).
    resume(resumePath, offset) {
      this.final = false;
      this.resumeUrl = resumePath;
      this.offset = offset || 0;
      this.attach(this.resumeSocketUrl(), "connecting");
    }

    resumeSocketUrl() {
      return wsUrl(this.resumeUrl, { ...this.handlers.size(), offset: this.offset, window: windowId() });
    }

    // Make the socket and wire it; the old one, if any, is forgotten first.
    attach(url, state) {
      this.forget();
      const socket = new WebSocket(url);
      socket.binaryType = "arraybuffer";
      socket.onopen = () => { this.heardAt = Date.now(); this.opened = true; };
      socket.onmessage = (event) => { if (socket === this.socket) this.receive(event.data); };
      socket.onclose = () => { if (socket === this.socket) this.lost(); };
      this.socket = socket;
      this.opened = false;
      this.ready = false;
      this.heardAt = Date.now();
      this.pingAt = 0;
      this.handlers.state(state, {});
    }

    // Let go of the current socket without reacting to its close.
    forget() {
      const socket = this.socket;
      this.socket = null;
      if (!socket) return;
      socket.onopen = socket.onmessage = socket.onclose = null;
      try { socket.close(4000, "reconnecting"); } catch (err) { /* closing a closing socket */ }
    }

    // A frame from the server: output counts towards the offset; control messages may change the state.
    receive(data) {
      this.heardAt = Date.now();
      this.pingAt = 0;
      if (typeof data !== "string") {
        this.offset += data.byteLength;
        this.handlers.output(new Uint8Array(data));
        return;
      }
      let message;
      try { message = JSON.parse(data); } catch (err) { return; }
      if (message.type === "pong") return;
      if (message.type === "connected" || message.type === "resumed") this.stands(message);
      else if (["closed", "error", "moved"].includes(message.type)) this.final = true;
      this.handlers.message(message);
    }

    // The session stands: note how to come back to it, send what was typed meanwhile.
    stands(message) {
      this.session = message.session;
      this.resumeUrl = "/terminals/sessions/" + encodeURIComponent(message.session) + "/ws";
      this.resumeSeconds = message.resume_seconds || 0;
      this.offset = message.offset || 0;
      this.ready = true;
      this.lostAt = null;
      this.attempt = 0;
      const waiting = this.queue, dropped = this.dropped;
      this.queue = [];
      this.queued = this.dropped = 0;
      waiting.forEach((bytes) => this.send(bytes));  // empty when some were dropped: all or nothing keeps the order
      this.handlers.state("open", { dropped: dropped });
    }

    // The socket closed: the end when the server said so or nothing can be resumed, else try to come back.
    lost() {
      this.socket = null;
      if (this.final || !this.session || this.resumeSeconds <= 0) {
        this.handlers.state(this.final ? "closed" : "disconnected", { opened: this.opened, dropped: this.takeDropped() });
        return;
      }
      this.reconnect();
    }

    // Try again after a pause that grows, while the server may still keep the session.
    reconnect() {
      if (!this.lostAt) this.lostAt = Date.now();
      const left = this.lostAt + this.resumeSeconds * 1000 - Date.now();
      if (left <= 0) {
        this.handlers.state("lost", { dropped: this.takeDropped() });
        return;
      }
      this.attempt = (this.attempt || 0) + 1;
      const delay = Math.min(RETRY_MAX, RETRY_FIRST * 2 ** (this.attempt - 1));
      this.handlers.state("reconnecting", { attempt: this.attempt, next: Date.now() + delay, until: this.lostAt + this.resumeSeconds * 1000 });
      clearTimeout(this.retry);
      this.retry = setTimeout(() => { if (!this.closedByUser) this.attach(this.resumeSocketUrl(), "reconnecting-now"); }, delay);
    }

    // Each second: a quiet socket gets a ping, and one that stays quiet after it is given up for a new one.
    check() {
      const socket = this.socket;
      if (!socket || socket.readyState !== WebSocket.OPEN || !this.ready) return;
      const now = Date.now();
      if (this.pingAt && now - this.pingAt > QUIET_AFTER) {
        this.forget();
        this.lost();
      } else if (!this.pingAt && now - this.heardAt > PING_AFTER) {
        this.pingAt = now;
        socket.send(JSON.stringify({ type: "ping" }));
      }
    }

    // How many keystrokes were lost, once: the tab says so.
    takeDropped() {
      const dropped = this.dropped + this.queued;
      this.dropped = 0;
      this.queue = [];
      this.queued = 0;
      return dropped;
    }

    // Send bytes as binary frames (a large paste in several); while reconnecting keep a few to send in order.
    send(bytes) {
      const socket = this.socket;
      if (socket && socket.readyState === WebSocket.OPEN && this.ready) {
        for (let start = 0; start < bytes.length; start += PASTE_CHUNK) socket.send(bytes.subarray(start, start + PASTE_CHUNK));
      } else if (this.waiting() && this.queued + bytes.length <= MAX_QUEUED && !this.dropped) {
        this.queue.push(bytes);
        this.queued += bytes.length;
      } else if (this.waiting()) {
        // Too much to keep: none of it is sent (a part could run half a command), nor anything typed after it.
        this.dropped += this.queued + bytes.length;
        this.queue = [];
        this.queued = 0;
      }
    }

    // Say whether typed keys are kept for later: the session is opening or coming back.
    waiting() {
      return !this.final && !this.closedByUser && (!!this.session || !!this.socket);
    }

    // Send a control message, when a socket carries.
    control(message) {
      const socket = this.socket;
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    }

    // Say whether the session is on, opening or coming back: closing the tab would end it.
    running() {
      return !this.final && (!!this.socket || !!this.lostAt);
    }

    // End the session on the user's word (a close frame: the server ends it at once), or just stop (gone=true).
    close() {
      this.closedByUser = true;
      clearInterval(this.timer);
      clearTimeout(this.retry);
      const socket = this.socket;
      this.socket = null;
      if (socket) {
        socket.onopen = socket.onmessage = socket.onclose = null;
        socket.close(1000, "tab closed");
      }
    }
  }

  window.GatehouseLink = { Link: Link, windowId: windowId };
})();
