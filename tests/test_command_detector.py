"""Commands read from the screen on Enter: byte streams as bash sends them, then a real bash in a PTY."""
import os
import pty
import select
import shutil
import subprocess
import time

import pytest

from app.terminals.commands import CommandDetector, tokens

PS1 = b"bob@db1:~$ "


class Session:
    """Drive a detector the way the recorder does: input as tokens, output as it comes, in order."""

    def __init__(self, cols=80, rows=24, **kwargs):
        self.detector = CommandDetector(cols, rows, **kwargs)
        self.commands = []
        self.t = 0.0

    def typed(self, data):
        self.t += 0.1
        act = {"k": self.detector.key, "e": self.detector.enter, "c": self.detector.cancel}
        for token in tokens(data):
            self.commands += act[token](self.t)
        return self

    def shown(self, data):
        self.t += 0.01
        self.commands += self.detector.output(data, self.t)
        return self

    def key(self, data, echo=None):
        """A key and the shell's echo of it."""
        return self.typed(data).shown(data if echo is None else echo)

    def line(self, text):
        for char in text:
            self.key(char.encode())
        return self

    def texts(self):
        return [text for _, text in self.commands + self.detector.finish()]


def test_tokens_describe_input_without_its_content():
    cases = {b"ls\r": ("k", "e"), b"\r": ("e",), b"a\x03": ("k", "c"), b"ls\rpwd\r": ("k", "e", "k", "e"),
             b"x\r\n": ("k", "e"), b"\x1b[A\x7f\t": ("k",), b"": ()}
    for data, expected in cases.items():
        assert tokens(data) == expected
    assert set(tokens(b"hunter2\r")) <= {"k", "e", "c"}


def test_typed_lines_edits_recall_and_completion_are_read_as_seen():
    s = Session().shown(PS1)
    s.line("echo hello").typed(b"\r").shown(b"\r\nhello\r\n" + PS1)
    s.line("echo wrold")  # fix it: four backspaces, retype
    for _ in range(4):
        s.key(b"\x7f", b"\x08\x1b[K")
    s.line("orld")
    s.typed(b"\r").shown(b"\r\nworld\r\n" + PS1)
    s.key(b"\x1b[A", b"echo world")  # history recall
    s.typed(b"\r").shown(b"\r\nworld\r\n" + PS1)
    s.line("ls /us").key(b"\t", b"r/")  # tab completion
    s.typed(b"\r").shown(b"\r\nbin  lib\r\n" + PS1)
    s.typed(b"\r").shown(b"\r\n" + PS1)  # an empty line is no command
    assert s.texts() == ["echo hello", "echo world", "echo world", "ls /usr/"]


def test_hidden_input_never_becomes_a_command():
    s = Session().shown(PS1)
    s.line("sudo true").typed(b"\r").shown(b"\r\n[sudo] password for bob: ")
    s.typed(b"hunter2").typed(b"\r").shown(b"\r\n" + PS1)  # no echo: the keys never reach the screen
    s.line("read -s S").typed(b"\r").shown(b"\r\n")
    s.typed(b"hunter2\r").shown(b"\r\n" + PS1)
    s.line("read -s -p 'pin: ' P").typed(b"\r").shown(b"\r\npin: ")
    s.typed(b"4711\r").shown(PS1)  # bash prints no newline after hidden input: the prompt shares the line
    s.commands += s.detector.settle(s.t + 2)
    texts = s.texts()
    assert texts == ["sudo true", "read -s S", "read -s -p 'pin: ' P"]
    assert "4711" not in " ".join(texts)
    assert "hunter2" not in " ".join(texts) + "".join(s.detector.screen_text()[0])


def test_pasted_lines_and_keys_typed_before_the_prompt():
    s = Session().shown(b"Last login: Tue from 10.0.0.1\r\n")
    s.typed(b"uptime\r")  # typed ahead: before the shell printed its first prompt
    s.shown(b"Welcome to db1\r\n" + PS1 + b"uptime\r\n 10:00 up 3 days\r\n" + PS1)
    s.typed(b"ls\rpwd\r")  # a pasted block: both Enters arrive before any echo
    s.shown(b"ls\r\n").shown(b"a  b\r\n" + PS1 + b"pwd\r").shown(b"\n/home/bob\r\n" + PS1)
    assert s.texts() == ["uptime", "ls", "pwd"]


def test_ctrl_c_abandons_the_line():
    s = Session().shown(PS1)
    s.line("rm -rf /tmp/x").typed(b"\x03").shown(b"^C\r\n" + PS1)
    s.line("true").typed(b"\r").shown(b"\r\n" + PS1)
    assert s.texts() == ["true"]


def test_long_lines_wrap_also_when_the_screen_scrolls():
    command = "echo " + "x" * 150
    s = Session(cols=40, rows=5).shown(b"\r\n" * 3 + PS1)  # the prompt is on the bottom row
    s.line(command).typed(b"\r").shown(b"\r\n" + b"x" * 150 + b"\r\n" + PS1)
    assert s.texts() == [command]


def test_full_screen_programs_give_no_commands():
    s = Session().shown(PS1)
    s.line("vim notes").typed(b"\r").shown(b"\r\n\x1b[?1049h\x1b[H\x1b[2J~\r\n~\r\n")
    s.typed(b"ihello\r").shown(b"hello\r\n").typed(b"\x1b:wq\r").shown(b":wq\r\n\x1b[?1049l" + PS1)
    s.line("cat notes").typed(b"\r").shown(b"\r\nhello\r\n" + PS1)
    assert s.texts() == ["vim notes", "cat notes"]


def test_an_enter_without_output_settles_after_a_second():
    s = Session().shown(PS1)
    s.line("cd /tmp")
    s.detector.enter(5.0)
    assert s.detector.settle(5.5) == []
    assert s.detector.settle(6.1) == [(5.0, "cd /tmp")]
    assert s.detector.finish() == []


def test_bulk_output_feeds_the_screen_only_its_tail(monkeypatch):
    s = Session(tail_bytes=16384).shown(PS1)
    fed = []
    real_feed = s.detector.stream.feed
    monkeypatch.setattr(s.detector.stream, "feed", lambda data: (fed.append(len(data)), real_feed(data)))
    s.line("cat big.log").typed(b"\r").shown(b"\r\n")
    for i in range(2000):
        s.shown(b"%06d some log line with text in it\r\n" % i)  # ~80 KB, in 2 000 reads
    s.shown(PS1).line("wc -l big.log").typed(b"\r").shown(b"\r\n2000 big.log\r\n" + PS1)
    assert s.texts() == ["cat big.log", "wc -l big.log"]
    assert sum(fed) < 20000  # of about 80 000 bytes of output


def test_utf8_split_across_reads():
    s = Session().shown(PS1)
    s.typed(b"echo h\xc3\xa9llo").shown(b"echo h\xc3").shown(b"\xa9llo")
    s.typed(b"\r").shown(b"\r\nh\xc3\xa9llo\r\n" + PS1)
    assert s.texts() == ["echo héllo"]


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed")
def test_a_real_bash(tmp_path):
    """A real interactive bash in a pseudo-terminal: its echo, its line editing, its history, a hidden read."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"],
                  {"PS1": "$ ", "TERM": "xterm-256color", "HISTFILE": str(tmp_path / "history"), "PATH": "/usr/bin:/bin"})
    detector, commands, start = CommandDetector(), [], time.monotonic()

    def pump(quiet=0.3, limit=5.0):
        deadline, last = time.monotonic() + limit, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < quiet:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                commands.extend(detector.output(data, time.monotonic() - start))
                last = time.monotonic()

    def type_(data):
        now = time.monotonic() - start
        for token in tokens(data):
            commands.extend({"k": detector.key, "e": detector.enter, "c": detector.cancel}[token](now))
        os.write(fd, data)
        pump()

    try:
        pump(quiet=0.5)
        type_(b"echo hello\r")
        type_(b"echo wrold")
        type_(b"\x1b[D\x1b[D\x1b[D\x7f")  # three left, the r goes: echo w|old
        type_(b"\x1b[Cr")  # one right, an r: echo wor|ld
        type_(b"\r")
        type_(b"\x1b[A")
        type_(b"\r")
        type_(b"read -s -p 'secret: ' S\r")
        type_(b"hunter2\r")
        type_(b"exit\r")
        commands.extend(detector.finish())
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
    texts = [text for _, text in commands]
    assert texts == ["echo hello", "echo world", "echo world", "read -s -p 'secret: ' S", "exit"], texts
    assert not any("hunter2" in text for text in texts)
