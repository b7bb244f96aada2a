"""Commands typed in a terminal, read from a server-side screen model (pyte) when Enter is pressed.

What counts is what the screen showed, not the keys: edits, history recall and tab completion give
the line as the user saw it, and input the remote did not echo (a password) never becomes data.
Input reaches this module only as tokens: a run of keys, Enter, Ctrl-C, never their bytes.
No Flask here.
"""
import collections
import re

import pyte

_TOKENS = re.compile(rb"\r\n?|\n|\x03|[^\r\n\x03]+")
_ALT_SCREEN = {mode << 5 for mode in (47, 1047, 1049)}  # pyte keeps private modes shifted by 5
_LINE_END = re.compile(rb"[\r\n]")
_AHEAD = (0, 0, 0)  # a line typed before its prompt showed: where it starts is found when it is read
_MAX_SKIPPED = 20  # banner lines waited through for the echo of typed-ahead keys; bounds the pyte work
_PROMPT = re.compile(r"^.{0,120}?[$#%>] ")  # how most shell prompts end


def tokens(data):
    """Describe input without its content: 'k' for a run of ordinary keys, 'e' for Enter, 'c' for a cancel."""
    return tuple("e" if t[0] in (13, 10) else "c" if t == b"\x03" else "k" for t in _TOKENS.findall(data))


class _Screen(pyte.Screen):
    """A pyte screen that counts how often it scrolled, so a remembered row can be followed."""

    scrolled = 0

    def index(self):
        """Move down one line; count it when the screen scrolls up instead."""
        top, bottom = self.margins or pyte.screens.Margins(0, self.lines - 1)
        if self.cursor.y == bottom:
            self.scrolled += 1
        super().index()


class CommandDetector:
    """Feed it output and input tokens in order; it returns (Enter time, command) as lines are entered.

    The screen is brought up to date lazily: pyte is pure Python (under 1 MB/s here), and bulk
    output (a `cat` of a large file) only matters for the screen it leaves behind, so at most
    tail_bytes of the output since the last look are fed (16 KiB: about 20 ms of work, more than a
    full 80x24 screen with its colours); older output is dropped and the screen reset.
    """

    def __init__(self, cols=80, rows=24, tail_bytes=16384):
        self.screen = _Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.tail_bytes = tail_bytes
        self._tail = []
        self._tail_size = 0
        self._line = None  # where the line being typed began: (x, y, scrolled); x 0 means not known
        self._pending = collections.deque()  # (time, line start) of Enters whose lines are read once echoed
        self._skipped = 0  # line ends passed while waiting for the echo of the first pending Enter
        self._prompt_text = ""  # what stood left of the last prompt seen (for keys typed before it shows)
        self._last_row = None  # (row, scrolled) of the last command read: a line is read once

    def output(self, data, t):
        """Take remote output; each line end after an Enter may show that Enter's line: read it then."""
        found = []
        start = 0
        while self._pending:
            end = _LINE_END.search(data, start)
            if end is None:
                break
            self._add(data[start:end.start()])
            start = end.start()
            if self._skipped >= _MAX_SKIPPED or self._echoed(self._pending[0][1]):
                read = self._resolve_first()
                found += read
                if not read and self._pending:
                    continue  # an empty or hidden line: the next Enter's line may end right here
            else:  # typed ahead of the prompt: this line end is earlier output (a banner), not the echo
                self._skipped += 1
            self._add(data[end.start():end.end()])
            start = end.end()
        self._add(data[start:])
        return found

    def key(self, t):
        """Note an ordinary key: the first one of a line marks where the prompt ends."""
        if self._line is None:
            self._line = _AHEAD if self._pending else self._cursor()
        return []

    def enter(self, t):
        """Note Enter: the line is read once the shell has echoed it (or settle() gives up waiting)."""
        self.key(t)
        if not self._pending:
            self._skipped = 0
        self._pending.append((t, self._line))
        self._line = None
        return []

    def cancel(self, t):
        """Note Ctrl-C: the line being typed is abandoned."""
        self._line = None
        return []

    def resize(self, cols, rows):
        """Follow a terminal size change."""
        self._catch_up()
        self.screen.resize(rows, cols)

    def settle(self, now, after=1.0):
        """Read the lines of Enters that waited more than `after` seconds for a line end, from the screen as it is."""
        found = []
        while self._pending and now - self._pending[0][0] >= after:
            found += self._resolve_first()
        return found

    def finish(self):
        """Read whatever is pending (the session ends)."""
        found = []
        while self._pending:
            found += self._resolve_first()
        return found

    def screen_text(self):
        """Return the screen's lines and the cursor position, up to date."""
        self._catch_up()
        return list(self.screen.display), self.screen.cursor.x, self.screen.cursor.y

    def _add(self, data):
        """Queue output for the screen, keeping only the newest tail_bytes."""
        if not data:
            return
        self._tail.append(data)
        self._tail_size += len(data)
        if self._tail_size > 2 * self.tail_bytes:
            self._trim()

    def _trim(self):
        """Drop all but the newest tail_bytes of queued output; the screen restarts from there."""
        joined = b"".join(self._tail)[-self.tail_bytes:]
        self._tail, self._tail_size = [joined], len(joined)
        self.screen.reset()
        # Positions on the old screen mean nothing now; waiting lines are looked for by their prompt.
        self._line = None if self._line is None else _AHEAD
        self._pending = collections.deque((t, _AHEAD) for t, _ in self._pending)
        self._last_row = None

    def _catch_up(self):
        """Feed the queued output to the screen."""
        if self._tail_size > self.tail_bytes:
            self._trim()
        for data in self._tail:
            self.stream.feed(data)
        self._tail, self._tail_size = [], 0

    def _cursor(self):
        """Return the cursor position and scroll count, up to date."""
        self._catch_up()
        return self.screen.cursor.x, self.screen.cursor.y, self.screen.scrolled

    def _echoed(self, start):
        """Say whether an entered line is on screen: its prompt was seen, or the cursor's line has one."""
        if start[0]:
            return True
        self._catch_up()
        row = min(self.screen.cursor.y, self.screen.lines - 1)
        return (row, self.screen.scrolled) != self._last_row and bool(self._prompt_end(self.screen.display[row]))

    def _prompt_end(self, line):
        """Return where the prompt ends on a line: the last prompt seen, else the usual `$ `, `# `, `% `, `> `."""
        if self._prompt_text.strip() and line.startswith(self._prompt_text):
            return len(self._prompt_text)
        found = _PROMPT.match(line)
        return found.end() if found else 0

    def _resolve_first(self):
        """Read the line of the oldest pending Enter from the screen; return [(time, text)] or []."""
        t, (x, y, scrolled) = self._pending.popleft()
        self._skipped = 0
        self._catch_up()
        if self.screen.mode & _ALT_SCREEN:
            return []  # Enter in a full-screen program (vim, less) is not a shell command
        lines = self.screen.display
        cursor = min(self.screen.cursor.y, len(lines) - 1)
        if x:
            y = max(y - (self.screen.scrolled - scrolled), 0)
            if self._prompt_text.strip() and lines[y][x:].startswith(self._prompt_text):
                return []  # hidden input, and the next prompt printed on the same line: nothing was typed here
            if _PROMPT.match(lines[y][:x]):
                self._prompt_text = lines[y][:x]  # a shell prompt (not a program's question such as secret:)
        else:  # keys came before the prompt was printed (typed ahead, pasted): find it on the line now
            y = cursor
            x = self._prompt_end(lines[y])
        text = (lines[y][x:] + "".join(lines[y + 1:max(y, cursor) + 1])).rstrip()
        if not text:
            return []
        self._last_row = (cursor, self.screen.scrolled)
        return [(t, text)]
