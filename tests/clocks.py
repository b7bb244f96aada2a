"""A clock for tests of background jobs: time moves when the test says (advance), or by the waits themselves."""
import threading
import time
from datetime import timedelta

from app.dbtypes import now_utc


class FakeClock:
    """Stand in for leases.Clock: monotonic seconds, UTC time and waits, on time the test moves.

    With auto=True a wait that nothing ends moves the time to its deadline after a moment of real time (so the
    other threads run): a loop that waits then runs as fast as the machine allows, and every wait still lasts its
    full time on this clock. Without it, a wait ends only when the event is set or a test's advance passes it.
    """

    def __init__(self, auto=False):
        self.auto = auto
        self.seconds = 1000.0
        self.started = now_utc()
        self.moved = threading.Condition()

    def monotonic(self):
        """Return this clock's seconds."""
        return self.seconds

    def now(self):
        """Return the UTC time: the real time at the start, plus how far this clock moved."""
        return self.started + timedelta(seconds=self.seconds - 1000.0)

    def advance(self, seconds):
        """Move the time forward; waits whose deadline passed end."""
        with self.moved:
            self.seconds += seconds
            self.moved.notify_all()

    def sleep_until(self, seconds):
        """Wait in real time (briefly each) until this clock reached the given monotonic seconds."""
        deadline = time.monotonic() + 30
        while self.seconds < seconds:
            assert time.monotonic() < deadline, "the clock did not move: is anything waiting on it?"
            time.sleep(0.005)

    def wait(self, event, timeout):
        """Wait until event is set or timeout seconds of this clock passed; return whether it is set."""
        deadline = self.seconds + timeout
        if self.auto:
            if event.wait(0.002):
                return True
            with self.moved:
                self.seconds = max(self.seconds, deadline)
                self.moved.notify_all()
            return event.is_set()
        with self.moved:
            while not event.is_set() and self.seconds < deadline:
                self.moved.wait(0.01)
        return event.is_set()
