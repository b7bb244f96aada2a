"""The command detector: byte streams as bash 5 sends them over a PTY, then a real bash in a local PTY."""
import fcntl
import os
import select
import struct
import subprocess
import termios
import time

import pytest

from app.terminals.commands import CommandDetector, tokens

PROMPT = b"\x1b[?2004h$ "  # bash 5 turns bracketed paste on before each prompt
ENTERED = b"\r\n\x1b[?2004l\r"  # and answers Enter with a line end and bracketed paste off
CTRL_C = b"^C\x1b[?2004l\r\x1b[?2004h\x1b[?2004l\r\r\n"  # as bash 5.2 answers Ctrl-C at its prompt


class Terminal:
    """Drive a detector the way the recorder does: input as tokens, output as it comes, in their true order."""

    def __init__(self, cols=80, rows=24, **options):
        self.detector = CommandDetector(cols, rows, **options)
        self.found = []
        self.t = 0.0

    def type(self, keys, echo=b""):
        """Press keys (the detector sees only their tokens), then show what the shell echoed."""
        self.t += 0.1
        act = {"k": self.detector.key, "e": self.detector.enter, "c": self.detector.cancel}
        for kind in tokens(keys):
            self.found += act[kind](self.t)
        return self.show(echo) if echo else self

    def show(self, data):
        """Show remote output."""
        self.t += 0.01
        self.found += self.detector.output(data, self.t)
        return self

    def typing(self, text):
        """Type text one key at a time, each echoed as typed."""
        for char in text:
            self.type(char.encode(), char.encode())
        return self

    def run(self, text, output=b""):
        """Type a command, press Enter, show its output and the next prompt."""
        return self.typing(text).type(b"\r", ENTERED + output + PROMPT)

    def commands(self):
        """Return the texts of every command found, including those still pending."""
        self.found += self.detector.finish()
        return [text for _, text in self.found]


@pytest.mark.parametrize("data, expected", [
    (b"ls\r", ("k", "e")),
    (b"\r", ("e",)),
    (b"a\x03", ("k", "c")),
    (b"ls\rpwd\r", ("k", "e", "k", "e")),
    (b"", ()),
    (b"\n", ("e",)),
    (b"ls\r\n", ("k", "e")),  # \r\n is one Enter
    (b"\r\n\r\n", ("e", "e")),
    (b"\r\r", ("e", "e")),
    (b"\x1b[A\x7f\tx", ("k",)),  # arrows, backspace, tab: all part of one run of keys
    (b"ab\x03cd\r", ("k", "c", "k", "e")),
    (b"\x03\x03", ("c", "c")),
])
def test_tokens_describe_input_without_its_content(data, expected):
    assert tokens(data) == expected


def test_tokens_keep_no_input_bytes():
    described = tokens(b"hunter2\rs3cr\xc3\xa9t\x03")
    assert described == ("k", "e", "k", "c")
    assert all(kind in ("k", "e", "c") for kind in described)


def test_a_typed_command_is_read_with_the_time_of_its_enter():
    term = Terminal().show(PROMPT).typing("echo hello")
    enter_time = term.t + 0.1
    term.type(b"\r", ENTERED + b"hello\r\n" + PROMPT)
    assert term.found == [(pytest.approx(enter_time), "echo hello")]


@pytest.mark.parametrize("steps, expected", [
    pytest.param([("echo abcd", None), (b"\x7f", b"\x08\x1b[K"), (b"\x7f", b"\x08\x1b[K")], "echo ab",
                 id="backspace erasing with ESC[K"),
    pytest.param([("echo abcd", None), (b"\x7f\x7f", b"\x08 \x08\x08 \x08")], "echo ab",
                 id="backspace as bash 5.2 erases"),
    pytest.param([("echo helo", None), (b"\x1b[D", b"\x08"), (b"l", b"lo\x08")], "echo hello",
                 id="left arrow then insert: bash redraws the rest"),
    pytest.param([("echo hllo", None), (b"\x1b[D\x1b[D\x1b[D", b"\x08\x08\x08"), (b"e", b"ello\x08\x08\x08")],
                 "echo hello", id="insert further left"),
])
def test_edited_lines_are_read_as_the_screen_shows_them(steps, expected):
    term = Terminal().show(PROMPT)
    for keys, echo in steps:
        if echo is None:
            term.typing(keys)
        else:
            term.type(keys, echo)
    term.type(b"\r", ENTERED + expected.removeprefix("echo ").encode() + b"\r\n" + PROMPT)
    assert term.commands() == [expected]


@pytest.mark.parametrize("first_up, second_up", [
    pytest.param(b"echo two", b"\x08\x08\x08one", id="backspaces and the differing tail"),
    pytest.param(b"\r\x1b[K$ echo two", b"\r\x1b[K$ echo one", id="whole line redrawn with the prompt"),
])
def test_history_recall_gives_the_recalled_command(first_up, second_up):
    term = Terminal().show(PROMPT)
    term.run("echo one", b"one\r\n").run("echo two", b"two\r\n")
    term.type(b"\x1b[A", first_up).type(b"\x1b[A", second_up)
    term.type(b"\r", ENTERED + b"one\r\n" + PROMPT)
    assert term.commands() == ["echo one", "echo two", "echo one"]


def test_history_recall_from_a_wrapped_line_at_the_bottom():
    long = "echo " + "x" * 50
    term = Terminal(40, 5).show(PROMPT).run("echo hi", b"hi\r\n")
    for column, char in enumerate(long, start=len("$ ") + 1):
        term.type(char.encode(), char.encode() + (b" \r" if column % 40 == 0 else b""))
    term.type(b"\r", ENTERED + b"x" * 50 + b"\r\n" + PROMPT)
    # What bash 5.2 printed at 40 columns: the long line (wrapping), then up a row to redraw the short one
    term.type(b"\x1b[A", b"echo " + b"x" * 34 + b"\r" + b"x" * 17)
    term.type(b"\x1b[A", b"\x1b[A\r$ echo hi\x1b[K\r\n\r\x1b[K\x1b[A$ echo hi")
    term.type(b"\r", ENTERED + b"hi\r\n" + PROMPT)
    assert term.commands() == ["echo hi", long, "echo hi"]


def test_tab_completion_gives_the_completed_line():
    term = Terminal().show(PROMPT).typing("ls /us").type(b"\t", b"r/")
    term.type(b"\r", ENTERED + b"bin  lib  local  share\r\n" + PROMPT)
    assert term.commands() == ["ls /usr/"]


def test_a_paste_whose_echo_arrives_after_the_enter():
    term = Terminal().show(PROMPT)
    term.type(b"ls\r")  # key and Enter reach the detector before bash echoed anything
    enter_time = term.t
    assert term.found == []
    term.show(b"ls" + ENTERED + b"notes.txt\r\n" + PROMPT)
    assert term.found == [(pytest.approx(enter_time), "ls")]


def test_a_pasted_block_gives_each_line_once():
    term = Terminal().show(PROMPT).type(b"ls\rpwd\r")
    term.show(b"ls" + ENTERED + b"notes.txt\r\n" + PROMPT + b"pwd" + ENTERED + b"/home/bob\r\n" + PROMPT)
    assert term.commands() == ["ls", "pwd"]


def test_keys_typed_before_the_first_prompt_skip_the_banner():
    term = Terminal().show(b"Last login: Tue from 10.0.0.1\r\n")
    term.type(b"uptime\r")  # typed ahead: the shell has not printed its first prompt yet
    term.show(b"Welcome to db1\r\n" + PROMPT + b"uptime" + ENTERED + b" 10:00 up 3 days\r\n" + PROMPT)
    assert term.commands() == ["uptime"]


def test_a_sudo_password_never_becomes_data():
    term = Terminal().show(PROMPT).typing("sudo true")
    term.type(b"\r", ENTERED + b"[sudo] password for bob: ")
    term.type(b"hunter2")  # echo is off: the keys reach the remote, nothing reaches the screen
    term.type(b"\r", b"\r\n" + PROMPT)
    texts = term.commands()
    lines, _, _ = term.detector.screen_text()
    assert texts == ["sudo true"]
    assert not any("hunter2" in text for text in texts)
    assert not any("hunter2" in line for line in lines)
    assert "[sudo] password for bob:" in lines[1]


def test_hidden_input_then_a_prompt_on_the_same_line_gives_nothing():
    term = Terminal().show(PROMPT)
    term.typing("read -s -p 'secret: ' S").type(b"\r", ENTERED + b"secret: ")
    term.type(b"hunter2").type(b"\r", PROMPT)  # read -s prints no line end: the next prompt shares the line
    term.run("echo done", b"done\r\n")
    texts = term.commands()
    assert texts == ["read -s -p 'secret: ' S", "echo done"]
    assert not any("hunter2" in text for text in texts)


def test_ctrl_c_abandons_the_line():
    term = Terminal().show(PROMPT).typing("rm -rf build").type(b"\x03", CTRL_C + PROMPT)
    term.run("ls", b"notes.txt\r\n")
    assert term.commands() == ["ls"]


@pytest.mark.parametrize("enters", [1, 3])
def test_empty_enters_give_nothing(enters):
    term = Terminal().show(PROMPT)
    for _ in range(enters):
        term.type(b"\r", ENTERED + PROMPT)
    assert term.commands() == []
    term.run("pwd", b"/home/bob\r\n")
    assert term.commands() == ["pwd"]


@pytest.mark.parametrize("lines_before", [0, 30], ids=["prompt at the top", "prompt at the bottom, screen scrolls"])
def test_a_long_command_wraps_over_several_rows(lines_before):
    cols, rows = 40, 10
    command = "echo " + "0123456789" * 9  # 95 characters after a 2-character prompt: three rows
    term = Terminal(cols, rows).show(b"".join(b"line %d\r\n" % n for n in range(lines_before)) + PROMPT)
    for column, char in enumerate(command, start=len("$ ") + 1):
        # readline, on reaching the right margin, writes a space and \r to move onto the next row
        term.type(char.encode(), char.encode() + (b" \r" if column % cols == 0 else b""))
    _, _, cursor_y = term.detector.screen_text()
    assert cursor_y == (2 if lines_before == 0 else rows - 1)
    term.type(b"\r", ENTERED + b"0123456789" * 9 + b"\r\n" + PROMPT)
    assert term.commands() == [command]


VIM = (b"\x1b[?1049h\x1b[22;0;0t\x1b[>4;2m\x1b[?1h\x1b=\x1b[?2004h\x1b[1;24r\x1b[27m\x1b[m\x1b[H\x1b[2J\x1b[?25l"
       + b"\x1b[24;1H\"notes.txt\" [New File]" + b"".join(b"\x1b[%d;1H\x1b[94m~" % n for n in range(2, 24))
       + b"\x1b[1;1H\x1b[?25h")
VIM_QUIT = (b"\x1b[?25l\x1b[24;1H\x1b[K\x1b[24;1H:wq\r\x1b[?2004l\x1b[>4;m\"notes.txt\" 2 lines, 12 bytes written\r"
            + b"\x1b[23;2t\x1b[23;1t\r\r\n\x1b[?2004l\x1b[?1l\x1b>\x1b[?1049l\x1b[23;0;0t\x1b[?25h\x1b[>4;m")


def test_enters_inside_vim_are_no_commands():
    term = Terminal().show(PROMPT).typing("vim notes.txt").type(b"\r", ENTERED + VIM)
    term.type(b"i", b"\x1b[?2004l\x1b[>4;m").type(b"hello", b"\x1b[?25l\x1b[mhello")
    term.type(b"\r", b"\r\n").type(b"world", b"world").type(b"\x1b", b"\x1b[?2004h\x1b[>4;2m\x08")
    term.type(b":wq\r", VIM_QUIT + PROMPT)
    term.run("cat notes.txt", b"hello\r\nworld\r\n")
    assert term.commands() == ["vim notes.txt", "cat notes.txt"]


@pytest.mark.parametrize("mode", [47, 1047, 1049])
def test_no_commands_in_the_alternate_screen_and_again_after_it(mode):
    term = Terminal().show(PROMPT).typing("less notes.txt")
    term.type(b"\r", ENTERED + b"\x1b[?%dh\x1b[H\x1b[2Jhello\r\nworld\r\n:" % mode)
    term.type(b"/world\r", b"/world\r\n")  # a search: Enter in less
    term.type(b"q", b"\r\x1b[K\x1b[?%dl" % mode + PROMPT)
    term.run("echo after", b"after\r\n")
    assert term.commands() == ["less notes.txt", "echo after"]


def test_settle_reads_an_enter_that_got_no_output_after_a_second_and_not_before():
    term = Terminal().show(PROMPT).typing("true").type(b"\r")
    enter_time = term.t
    assert term.detector.settle(enter_time + 0.5) == []
    assert term.detector.settle(enter_time + 1.5) == [(enter_time, "true")]
    assert term.detector.settle(enter_time + 3) == []
    assert term.detector.finish() == []


def test_finish_reads_a_pending_enter():
    term = Terminal().show(PROMPT).typing("exit").type(b"\r")
    assert term.detector.finish() == [(term.t, "exit")]


def test_bulk_output_feeds_the_screen_only_its_tail(monkeypatch):
    term = Terminal()
    fed = []
    feed = term.detector.stream.feed
    monkeypatch.setattr(term.detector.stream, "feed", lambda data: (fed.append(len(data)), feed(data)))
    term.show(PROMPT).typing("seq 400000").type(b"\r", ENTERED)
    bulk = b"".join(b"%d\r\n" % n for n in range(1, 400001))
    for start in range(0, len(bulk), 4096):
        term.show(bulk[start:start + 4096])
    term.show(PROMPT).run("echo done", b"done\r\n")
    assert len(bulk) > 100 * term.detector.tail_bytes
    assert term.commands() == ["seq 400000", "echo done"]
    assert sum(fed) <= term.detector.tail_bytes + 1024


def test_utf8_split_across_two_outputs():
    term = Terminal().show(PROMPT).type(b"echo h\xc3\xa9llo")
    term.show(b"echo h\xc3").show(b"\xa9llo")
    term.type(b"\r", ENTERED + "héllo\r\n".encode() + PROMPT)
    assert term.commands() == ["echo héllo"]


def test_resize_and_screen_text_follow_the_terminal():
    term = Terminal(40, 10).show(PROMPT)
    term.detector.resize(120, 30)
    command = "echo " + "x" * 100
    term.typing(command)
    lines, x, y = term.detector.screen_text()
    assert (len(lines), len(lines[0]), x, y) == (30, 120, len("$ " + command), 0)
    term.type(b"\r", ENTERED + PROMPT)
    assert term.commands() == [command]


def _read_until_quiet(fd, deadline, quiet=0.3):
    """Read what the pseudo-terminal prints until it has been quiet for `quiet` seconds or time is up."""
    chunks = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], min(quiet, max(deadline - time.monotonic(), 0)))
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: bash has gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    return chunks


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="needs /bin/bash")
def test_a_real_bash_in_a_pseudo_terminal(tmp_path):
    inputrc = tmp_path / "inputrc"
    inputrc.write_text("set enable-bracketed-paste on\n")  # the default since bash 5.1; pinned for older ones
    env = {"PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "PS1": "$ ", "HOME": str(tmp_path),
           "HISTFILE": str(tmp_path / "history"), "INPUTRC": str(inputrc), "LANG": "C.UTF-8"}
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    bash = subprocess.Popen(
        ["/bin/bash", "--norc", "--noprofile", "-i"], stdin=slave, stdout=slave, stderr=slave, env=env,
        cwd=tmp_path, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # the PTY becomes bash's terminal: job control
    os.close(slave)
    deadline = time.monotonic() + 9
    detector = CommandDetector(80, 24)
    act = {"k": detector.key, "e": detector.enter, "c": detector.cancel}
    found = []

    def pump():
        for chunk in _read_until_quiet(master, deadline):
            found.extend(detector.output(chunk, time.monotonic()))

    try:
        pump()  # the first prompt
        for keys in [b"echo hello\r", b"echo abcd", b"\x7f\x7f", b"\r", b"\x1b[A", b"\x1b[A", b"\r",
                     b"read -s -p 'secret: ' S\r", b"hunter2\r", b"echo done\r"]:
            for kind in tokens(keys):  # the input is seen before the output it causes, as in the gateway
                found.extend(act[kind](time.monotonic()))
            os.write(master, keys)
            pump()
        lines, _, _ = detector.screen_text()
        found.extend(detector.finish())
    finally:
        bash.kill()
        bash.wait(timeout=5)
        os.close(master)
    texts = [text for _, text in found]
    assert texts == ["echo hello", "echo ab", "echo hello", "read -s -p 'secret: ' S", "echo done"]
    assert not any("hunter2" in text for text in texts)
    assert not any("hunter2" in line for line in lines)
