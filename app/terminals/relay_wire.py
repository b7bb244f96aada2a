"""The framing of a terminal relayed between two processes over the cluster bus (app.cluster): a watch
(app.terminals.relay) or a resume (app.terminals.resume_relay).

Frames travel as items, ["b", base64 bytes] or ["t", text], packed into NOTIFY-sized messages that carry a sequence
number, so the receiving side sees a lost message as a gap. Each side beats every BEAT seconds and counts the other
as gone after SILENCE without a word.
"""
import base64
import time

BEAT = 2.0  # seconds between two signs of life of a relay, each way
SILENCE = 15.0  # seconds without one before the other side counts as gone
RAW_PIECE = 4096  # output bytes per item (base64 makes 5464 characters of them)
BUDGET = 7000  # characters of items per message, under NOTIFY's 8000 bytes with the envelope


def pack(items):
    """Yield the frames (bytes or text) as lists of ["b", base64 bytes] and ["t", text], each list within BUDGET."""
    batch, size = [], 0
    for item in items:
        pieces = ([["t", item]] if isinstance(item, str) else
                  [["b", base64.b64encode(item[i:i + RAW_PIECE]).decode()] for i in range(0, len(item), RAW_PIECE)])
        for piece in pieces:
            if batch and size + len(piece[1]) > BUDGET:
                yield batch
                batch, size = [], 0
            batch.append(piece)
            size += len(piece[1]) + 8
    if batch:
        yield batch


def unpack(items):
    """Yield the frames a message carries: bytes for output or input, text for control messages."""
    for kind, value in items or ():
        yield base64.b64decode(value) if kind == "b" else value


class Sequence:
    """One direction of a relay: numbers what goes out, checks what comes in, and knows when each side last spoke."""

    def __init__(self):
        self.sent_seq = self.heard_seq = 0
        self.heard = self.sent = time.monotonic()

    def next(self):
        """Return the number of the next message sent, noting that this side spoke."""
        self.sent_seq += 1
        self.sent = time.monotonic()
        return self.sent_seq

    def take(self, seq):
        """Note a message from the other side; return whether it is the next one (False: one was lost)."""
        self.heard = time.monotonic()
        if seq != self.heard_seq + 1:
            return False
        self.heard_seq = seq
        return True

    def beat_due(self):
        """Say whether this side should give a sign of life now."""
        return time.monotonic() - self.sent >= BEAT

    def silent(self):
        """Say whether the other side has been quiet too long."""
        return time.monotonic() - self.heard > SILENCE
