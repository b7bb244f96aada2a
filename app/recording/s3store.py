"""Recordings in an S3 bucket (AWS S3 or a server that speaks its API), through boto3. No Flask here.

Every node of a cluster reaches the same bucket, so a recording outlives the node that wrote it.

**One object per write, not a multipart upload.** A multipart upload takes parts of 5 MiB or more (but the
last), and its parts cannot be read before the upload is completed: a recording would sit in the memory of
the node writing it until 5 MiB were buffered, and a node lost mid-session would take all of that with it.
Here each write of the recorder (one encrypted chunk, flushed every second) becomes its own object,
`<prefix><session id>/0000000001.part`, `…/0000000002.part`, …; a recording is its parts in order, found by
listing. What a flush wrote is in the bucket when the flush returns, so a node killed mid-session leaves a
recording readable up to its last flush, and another node repairs it (repair) exactly as it repairs a file.

When a recording is closed its small parts are merged into larger objects (up to SEGMENT_BYTES) named by
the parts they replace, `…/0000000001-0000000750.part`, and the small ones deleted, so reading a long
recording lists and fetches a few objects rather than thousands. A merge that stops half-way (a crash)
loses nothing: a reader takes, at each place, the object that covers the most parts and ignores the rest.

**Checksums.** Every object is uploaded with ChecksumAlgorithm=SHA256: boto3 sends the SHA-256 of the bytes,
the server checks it before it stores the object and returns it, and the upload counts only when the
returned checksum is the one computed here. Every read compares the SHA-256 of the bytes received with the
checksum the server keeps for the object; a part that differs, or has none, is an error. (The chunks
themselves are also sealed by AES-GCM and by the session's end event.)

Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an instance
role), never from Gatehouse's settings; they never reach a message: errors name the bucket, the error code
and the server's words only. botocore's own debug log (signed request headers) is held at WARNING.
"""
import base64
import hashlib
import uuid
from contextlib import suppress

from .s3client import shared_client
from .s3parts import ObjectStoreError, Part, Reader, Writer, cover, merge_groups
from .store import RecordingError, checked_name, is_name

SEGMENT_BYTES = 4 * 1024 * 1024  # a merged object at most (about): a reader holds one object at a time


def _why(exc):
    """Say what went wrong in the words of the server or of botocore, with no credential in them."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        error = response["Error"]
        return f"{error.get('Code') or 'error'}: {error.get('Message') or 'no further words from the server'}"
    return str(exc) or type(exc).__name__


def _sha256(data):
    """Return the SHA-256 of data as S3 writes it (base64)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def normal_prefix(prefix):
    """Return a key prefix that is empty or ends with one slash (no leading slash)."""
    prefix = (prefix or "").strip().lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


class S3Store:
    """Recordings as objects in one bucket under one prefix (see the module's words)."""

    def __init__(self, bucket, prefix="", *, endpoint=None, region=None, client=None):
        self.bucket, self.prefix = bucket, normal_prefix(prefix)
        self.where = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint}" if endpoint else "")
        self.client = client or shared_client(endpoint, region)

    def _call(self, operation, **params):
        """Call one S3 operation on the bucket; its failures become ObjectStoreError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except (BotoCoreError, ClientError) as exc:
            error = ObjectStoreError(f"{operation} on {self.where}: {_why(exc)}")
            error.code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            error.why = _why(exc)
            raise error from None

    def put(self, key, data, new=False):
        """Store one object with its SHA-256 checked by the server; fail unless the server confirms that checksum.

        new=True stores it only where there is none yet (If-None-Match): a writer that another node took for
        dead, and whose recording it sealed, cannot write over the end mark. The same bytes already there
        are a retried upload of its own and count as stored.
        """
        data, digest = bytes(data), _sha256(data)
        try:
            answer = self._call("put_object", Key=key, Body=data, ChecksumAlgorithm="SHA256",
                                **({"IfNoneMatch": "*"} if new else {}))
        except ObjectStoreError as exc:
            if not new or exc.code != "PreconditionFailed":
                raise
            if self._call("head_object", Key=key, ChecksumMode="ENABLED").get("ChecksumSHA256") == digest:
                return
            error = ObjectStoreError(f"{key} in {self.where} holds other bytes: this recording was sealed elsewhere")
            error.code = exc.code
            raise error from None
        if answer.get("ChecksumSHA256") != digest:
            with suppress(OSError):
                self.remove([key])
            raise ObjectStoreError(f"{self.where} did not confirm the SHA-256 checksum of {key}"
                                   " (a server without S3 checksums cannot keep recordings)")

    def get(self, key):
        """Return one object's bytes after comparing them with the checksum the server keeps for it."""
        from botocore.exceptions import BotoCoreError, FlexibleChecksumError

        answer = self._call("get_object", Key=key, ChecksumMode="ENABLED")
        try:
            with answer["Body"] as body:
                data = body.read()
        except FlexibleChecksumError:  # botocore compares too, as the bytes come
            raise RecordingError(f"{key} does not match its SHA-256 checksum in {self.where}") from None
        except BotoCoreError as exc:  # the connection broke while the bytes came
            raise ObjectStoreError(f"reading {key} from {self.where}: {_why(exc)}") from None
        kept = answer.get("ChecksumSHA256")
        if kept is None:
            raise RecordingError(f"{key} has no SHA-256 checksum in {self.where}")
        if kept != _sha256(data):
            raise RecordingError(f"{key} does not match its SHA-256 checksum in {self.where}")
        return data

    def remove(self, keys):
        """Delete objects, a thousand at a time; fail when the server kept any."""
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            answer = self._call("delete_objects", Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise ObjectStoreError(f"{self.where} kept {first.get('Key')}: {first.get('Code')}"
                                       f" {first.get('Message') or ''}".rstrip())

    def _list(self, prefix, delimiter=None):
        """Yield the pages of a listing under a prefix."""
        token, extra = None, ({"Delimiter": delimiter} if delimiter else {})
        while True:
            page = self._call("list_objects_v2", Prefix=prefix, **extra,
                              **({"ContinuationToken": token} if token else {}))
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def folder(self, name):
        """Return the key prefix of one recording's objects."""
        return f"{self.prefix}{checked_name(name)}/"

    def key(self, name, first, last=None):
        """Return the key of a recording's part (first) or merged parts (first to last)."""
        return self.folder(name) + (f"{first:010d}" if last is None else f"{first:010d}-{last:010d}") + ".part"

    def objects(self, name):
        """Return every part object of a recording (merged ones and leftovers included), unsorted."""
        folder = self.folder(name)
        found = []
        for page in self._list(folder):
            for item in page.get("Contents", ()):
                part = Part.parse(item["Key"], folder, item["Size"])
                if part is not None:
                    found.append(part)
        return found

    def parts(self, name):
        """Return the parts that make up a recording, in order."""
        return cover(self.objects(name))

    def check(self):
        """Make sure the bucket takes objects now (a probe, then deleted), or raise RecordingError saying why."""
        probe = f"{self.prefix}.probe-{uuid.uuid4().hex}"
        try:
            self.put(probe, b"probe")
        except OSError as exc:
            why = getattr(exc, "why", None) or exc
            raise RecordingError(f"the recordings bucket {self.where} cannot be written: {why}") from None
        with suppress(OSError):  # deleting is retention's business; a probe left over is harmless
            self.remove([probe])

    def create(self, name):
        """Start a new recording (never an existing one); return its writer."""
        try:
            existing = self.objects(name)
        except OSError as exc:
            raise RecordingError(f"cannot create recording {name}: {exc}") from None
        if existing:
            raise RecordingError(f"cannot create recording {name}: it exists in {self.where}")
        return Writer(self, name)

    def open(self, name):
        """Open a recording for reading, or return None when there is none."""
        parts = self.parts(name)
        return Reader(self, name, parts) if parts or self.objects(name) else None

    def size(self, name):
        """Return the stored size in bytes, or None when there is none."""
        objects = self.objects(name)
        return sum(part.size for part in cover(objects)) if objects else None

    def delete(self, name):
        """Delete every object of a recording; say whether there was one."""
        folder = self.folder(name)
        keys = [item["Key"] for page in self._list(folder) for item in page.get("Contents", ())]
        self.remove(keys)
        return bool(keys)

    def names(self):
        """Return the names of the stored recordings."""
        found = set()
        for page in self._list(self.prefix, "/"):
            for common in page.get("CommonPrefixes", ()):
                name = common["Prefix"][len(self.prefix):].rstrip("/")
                if is_name(name):
                    found.add(name)
        return sorted(found)

    def repair(self, name, length, tail):
        """Keep a recording's first length bytes (deleting every other object of it) and add tail as the next part."""
        objects = self.objects(name)
        kept, offset = [], 0
        for part in cover(objects):
            if offset >= length:
                break
            if offset + part.size > length:  # a part cut inside: keep its beginning under the same key
                self.put(part.key, self.get(part.key)[:length - offset])
            kept.append(part)
            offset += part.size
        self.remove(part.key for part in objects if part not in kept)  # first: the tail may take a key of theirs
        self.put(self.key(name, kept[-1].last + 1 if kept else 1), tail)

    def merge(self, name, limit=SEGMENT_BYTES):
        """Merge a closed recording's small parts into objects of up to limit bytes; delete the small ones."""
        for group in merge_groups(self.parts(name), limit):
            data = b"".join(self.get(part.key) for part in group)
            self.put(self.key(name, group[0].first, group[-1].last), data)
            self.remove(part.key for part in group)
