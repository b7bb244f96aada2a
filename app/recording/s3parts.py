"""A recording in an object store as parts (app.recording.s3store): which objects make it up, and the writer
and the reader that the recorder and the chunk reader use as they use a file. No Flask here."""
import bisect
import io
import logging
import re
from dataclasses import dataclass

log = logging.getLogger("gatehouse.recordings")
_PART = re.compile(r"(\d{10})(?:-(\d{10}))?\.part")


class ObjectStoreError(OSError):
    """The object store refused a request or could not be reached (an OSError, as a failing disk's)."""

    code = None  # the server's error code (NoSuchKey, NoSuchBucket, AccessDenied…), when it answered
    why = None  # what went wrong, in the server's or botocore's words


@dataclass(frozen=True)
class Part:
    """One object of a recording: the parts it holds (first to last, from 1), its key and its size."""

    first: int
    last: int
    key: str
    size: int

    @classmethod
    def parse(cls, key, folder, size):
        """Return the part a key under a recording's folder names, or None for any other object."""
        match = _PART.fullmatch(key[len(folder):])
        if not match:
            return None
        first, last = int(match[1]), int(match[2] or match[1])
        return cls(first, last, key, size) if 1 <= first <= last else None


def cover(objects):
    """Return the objects that make up a recording, in order: from part 1 on, at each place the object that
    holds the most parts (a merged one over the small ones a stopped merge left); a gap ends it."""
    best = {}
    for part in objects:
        if part.first not in best or part.last > best[part.first].last:
            best[part.first] = part
    chain, place = [], 1
    while place in best:
        chain.append(best[place])
        place = best[place].last + 1
    return chain


def merge_groups(parts, limit):
    """Return the runs of consecutive parts worth merging: two or more that add up to at most limit bytes."""
    groups, group, size = [], [], 0
    for part in parts:
        if group and size + part.size > limit:
            groups.append(group)
            group, size = [], 0
        group.append(part)
        size += part.size
    groups.append(group)
    return [group for group in groups if len(group) > 1]


class Writer:
    """A recording being written: each write() is stored as the next part before it returns."""

    def __init__(self, store, name):
        self.store, self.name, self.written, self.closed = store, name, 0, False

    def write(self, data):
        """Store data as the next part; all of it or, raising ObjectStoreError, none of it."""
        if self.closed:
            raise ValueError("write to a closed recording")
        key = self.store.key(self.name, self.written + 1)
        try:
            self.store.put(key, data, new=True)
        except OSError as exc:
            if getattr(exc, "code", None) == "PreconditionFailed":
                raise  # another node's part there (its end mark): not ours to delete
            try:  # an upload that timed out may still have been stored: no part past what was written
                self.store.remove([key])
            except OSError:
                pass
            raise
        self.written += 1
        return len(data)

    def fileno(self):
        """There is no file descriptor (a caller that wants one to cut a torn write finds nothing to cut)."""
        raise io.UnsupportedOperation("a recording in an object store has no file descriptor")

    def close(self):
        """Close the recording and merge its parts (a merge that fails leaves them as they are: still whole)."""
        if self.closed:
            return
        self.closed = True
        if self.written > 1:
            try:
                self.store.merge(self.name)
            except Exception as exc:  # the recording is whole without the merge; only reading it is slower
                log.warning("recording %s keeps its %d parts unmerged: %s", self.name, self.written, exc)


class Reader:
    """A recording being read: one object at a time fetched (and checked against its checksum) as read() needs it."""

    def __init__(self, store, name, parts):
        self.store, self.name = store, name
        self._use(parts)
        self.position, self.start, self.data, self.closed = 0, 0, b"", False

    def _use(self, parts):
        """Take a listing of the recording's parts (with where each starts)."""
        self.parts, self.starts, offset = parts, [], 0
        for part in parts:
            self.starts.append(offset)
            offset += part.size

    def read(self, size=-1):
        """Return size bytes (all that is left when negative); fewer only at the end of the recording."""
        pieces, left = [], size
        while left != 0:
            if self.position - self.start >= len(self.data) and not self._load():
                break
            offset = self.position - self.start
            piece = self.data[offset:] if left < 0 else self.data[offset:offset + left]
            pieces.append(piece)
            self.position += len(piece)
            left = left - len(piece) if left > 0 else left
        return b"".join(pieces)

    def _at(self, position):
        """Return (start, part) of the object that holds a place in the recording, or None past its end."""
        index = bisect.bisect_right(self.starts, position) - 1
        if index < 0 or position >= self.starts[index] + self.parts[index].size:
            return None
        return self.starts[index], self.parts[index]

    def _load(self):
        """Fetch the object that holds the current place; say whether it has bytes there."""
        found = self._at(self.position)
        if found is None:
            return False
        try:
            data = self.store.get(found[1].key)
        except ObjectStoreError as exc:
            if exc.code not in ("NoSuchKey", "404"):
                raise
            self._use(self.store.parts(self.name))  # merged since it was listed: what holds this place now
            found = self._at(self.position)
            if found is None:
                return False
            data = self.store.get(found[1].key)
        self.start, self.data = found[0], data
        return len(data) > self.position - self.start

    def tell(self):
        """Return how many bytes were read."""
        return self.position

    def close(self):
        """Let go of the object in memory."""
        self.closed, self.data = True, b""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
