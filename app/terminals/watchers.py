"""Watchers of a live terminal: attached before their first screen is drawn, ended with their log-in and role.

Watched is the part of LiveTerminal that shows it to watchers. end_refused() runs each second in every process
(a background job, through registry.end_requested) and ends the watches app.access.watch_refusals refuses: the log-in
ended or expired, the account is disabled or gone, the watcher is no longer an admin, whichever process or node
made the change; end_for_login() ends a log-in's watches at once in the process where the log-in ended.
"""
import json
import threading

from simple_websocket import ConnectionClosed

from app.access import watch_refusals
from app.blocking import run_blocking

from . import session_events
from .watching import FELL_BEHIND

# Why watching stopped: the watch page's sentence (None: nobody is left to read it) and the trail's words.
WATCH_ENDS = {
    "left": (None, "the watcher closed the page or stopped watching"),
    "session_ended": ("The session ended.", "the session ended"),
    "fell_behind": (FELL_BEHIND, "the watcher's connection could not keep up"),
    "logged_out": ("You logged out; watching stopped.", "the watcher logged out"),
    "password_changed": ("Your password was changed; this log-in and watching ended.", "the watcher's password "
                         "was changed"),
    "second_factor_changed": ("Your second factor changed; this log-in and watching ended.", "the watcher's "
                              "second factor changed"),
    "expired": ("Your log-in session expired; watching stopped.", "the watcher's log-in expired"),
    "idle_timeout": ("Your log-in ended after a time without activity; watching stopped.", "the watcher's log-in "
                     "ended after a time without activity"),
    "ended_by_user": ("This log-in was ended from the active log-ins list; watching stopped.", "the watcher's "
                      "log-in was ended"),
    "ended_by_admin": ("An admin ended your log-in; watching stopped.", "an admin ended the watcher's log-in"),
    "user_disabled": ("Your account was disabled; watching stopped.", "the watcher's account was disabled"),
    "user_deleted": ("Your account was deleted; watching stopped.", "the watcher's account was deleted"),
    "not_admin": ("You are no longer an admin; watching stopped.", "the watcher is no longer an admin"),
    "holder_lost": ("The server holding this session stopped answering; watching stopped.", "the server holding "
                    "the session stopped answering"),
}
_OTHER = ("Watching stopped.", "watching stopped")


def stop(watcher, reason):
    """End one watcher for reason, with the sentence its page shows."""
    watcher.end(WATCH_ENDS.get(reason, _OTHER)[0] or _OTHER[0], reason)


class Watched:
    """The watching part of a live terminal: needs metadata, size, recorder, _flush_lock, tell() and _closed."""

    watchers = ()  # replaced, never changed in place: the pump reads it without a lock

    def __init__(self):
        # Output and size changes go to the recorder and the watchers under this lock, so a watcher's start
        # finds both at the same point; held only for appends, never across a wait.
        self._fanout_lock = threading.Lock()

    def fan_out(self, data):
        """Give remote output to the recorder and every watcher, as one step."""
        with self._fanout_lock:
            if self.recorder is not None:
                self.recorder.output(data)
            for watcher in self.watchers:
                watcher.output(data)

    def resized(self, cols, rows):
        """Note a new terminal size for the recorder and every watcher, as one step."""
        with self._fanout_lock:
            self.size = cols, rows
            if self.recorder is not None:
                self.recorder.resize(cols, rows)
            for watcher in self.watchers:
                watcher.control("size", cols=cols, rows=rows)

    def watch(self, watcher, recorded=True):
        """Show this terminal to a watcher: attach it, then draw the current screen in front of what came since.

        Raises AuditWriteError when the start cannot be recorded: nobody watches unrecorded. A watch relayed to
        another process (recorded=False) was recorded there, in the watcher's own request.
        """
        if recorded:
            session_events.watch_started(self.metadata, watcher.name)
        with self._fanout_lock:
            self.watchers = (*self.watchers, watcher)
        self._draw(watcher)
        if self._closed:  # it ended while the watcher joined: close() may have told the watchers before
            stop(watcher, "session_ended")
        self._tell_watchers()

    def _draw(self, watcher):
        """Start a watcher with the size and the screen; drop what it holds that the screen already shows."""
        recorder = self.recorder
        if recorder is None:  # not recorded: no screen model, live output only
            with self._fanout_lock:
                watcher.start([_size(self.size)])
            return
        with self._flush_lock:  # nobody else flushes meanwhile: what is still buffered is not on the screen
            if recorder.state == "recording":
                run_blocking(recorder.flush)
            lines, x, y = run_blocking(recorder.detector.screen_text)
            text = "\r\n".join(line.rstrip() for line in lines)
            screen = f"\x1b[H\x1b[2J{text}\x1b[{y + 1};{x + 1}H".encode()
            with self._fanout_lock:
                # The watcher holds all output since it was attached; what is not buffered any more is on the screen.
                watcher.start([_size(self.size), screen], skip=max(0, watcher.queued - recorder.buffered))

    def unwatch(self, watcher, recorded=True):
        """Stop showing this terminal to a watcher; record why (unless the relaying process does); tell the user."""
        if watcher not in self.watchers:
            return
        with self._fanout_lock:
            self.watchers = tuple(w for w in self.watchers if w is not watcher)
        if recorded:
            record_watch_end(self.metadata, watcher)
        self._tell_watchers()

    def _tell_watchers(self):
        """Tell the user's tab who is watching now (an empty list: nobody)."""
        names = sorted({w.name for w in self.watchers})
        try:
            self.tell("watched", f"Being watched by {', '.join(names)}" if names else None, by=names)
        except (ConnectionClosed, OSError):
            pass  # the tab is gone; the session is ending anyway


def record_watch_end(metadata, watcher):
    """Record session.watch_ended with the watcher's reason in words."""
    reason = watcher.reason or "left"
    session_events.watch_ended(metadata, watcher.name, reason, WATCH_ENDS.get(reason, _OTHER)[1])


def _size(size):
    """Return the size control message a watcher starts with."""
    cols, rows = size
    return json.dumps({"type": "size", "cols": cols, "rows": rows})


def end_refused(terminals):
    """End the watches of these terminals that their watchers may not keep (app.access.watch_refusals); count them."""
    watchers = [w for terminal in terminals for w in terminal.watchers if w.ended is None]
    refused = watch_refusals((w.user_id, w.login_id) for w in watchers)
    ended = [w for w in watchers if (w.user_id, w.login_id) in refused]
    for watcher in ended:
        stop(watcher, refused[(watcher.user_id, watcher.login_id)])
    return len(ended)


def end_for_login(terminals, login_id, reason):
    """End at once the watches made through a log-in that ended."""
    for terminal in terminals:
        for watcher in terminal.watchers:
            if login_id and watcher.login_id == login_id:
                stop(watcher, reason)
