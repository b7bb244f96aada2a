"""Recordings in an S3 object store: the store's methods against a real S3-speaking server on loopback
(moto_server, tests/s3server.py), then real terminals through gunicorn and sshd that record into a bucket."""
import hashlib
import io
import json
import signal
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from app.audit import retention as audit_retention
from app.dbtypes import now_utc
from app.extensions import db
from app.recording.chunks import check, iter_cast, recover, scan
from app.recording.recorder import Recorder
from app.recording.s3store import S3Store
from app.recording.store import LocalStore, RecordingError, open_store
from config import Config
from config_values import ConfigError
from tests.s3server import DUMMY_AWS, s3server  # noqa: F401  (the fixture)
from tests.support import (ROOT, connect_terminal, free_port, make_app, open_terminal, read_until, session_of,
                           wait_for)
from tests.test_recording import server_key, trail, wait_ended

KEY = bytes(range(32))


@pytest.fixture
def bucket(s3server):
    return s3server.bucket()


@pytest.fixture
def store(s3server, bucket):
    return S3Store(bucket, "recordings/", client=s3server.client())


def text_of(store, name, key=KEY):
    """Return a stored recording's asciicast as text."""
    return b"".join(iter_cast(store, name, key)).decode()


def new_recorder(store):
    """Return a recorder writing a new recording into the store."""
    return Recorder(store, str(uuid.uuid4()), KEY)


def test_each_flush_is_an_object_at_once_and_closing_merges_them(s3server, bucket, store):
    recorder = new_recorder(store)
    folder = f"recordings/{recorder.name}/"
    assert s3server.keys(bucket, folder) == [folder + "0000000001.part"]  # the header, at once
    for n in range(3):
        recorder.output(f"line {n}\r\n".encode())
        recorder.flush()
        assert len(s3server.keys(bucket, folder)) == n + 2  # in the bucket when the flush returns
        assert f"line {n}" in text_of(store, recorder.name)
    seal = recorder.finish()
    assert s3server.keys(bucket, folder) == [folder + "0000000001-0000000005.part"]
    assert check(store, recorder.name, KEY, seal) == ("verified", None)
    text = text_of(store, recorder.name)
    assert all(f"line {n}" in text for n in range(3))
    assert seal["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    head = s3server.client().head_object(Bucket=bucket, Key=folder + "0000000001-0000000005.part",
                                         ChecksumMode="ENABLED")
    assert head["ContentLength"] == store.size(recorder.name) and head["ChecksumSHA256"]


def test_names_size_and_delete(s3server, bucket, store):
    names = []
    for _ in range(3):
        recorder = new_recorder(store)
        recorder.output(b"x" * 1000)
        recorder.finish()
        names.append(recorder.name)
    s3server.client().put_object(Bucket=bucket, Key="recordings/not-a-session/0000000001.part", Body=b"x")
    assert store.names() == sorted(names)
    assert all(store.size(name) > 0 for name in names) and store.size(str(uuid.uuid4())) is None
    assert store.open(str(uuid.uuid4())) is None
    assert store.delete(names[0]) is True and store.delete(names[0]) is False
    assert store.size(names[0]) is None and s3server.keys(bucket, f"recordings/{names[0]}/") == []
    assert store.names() == sorted(names[1:])


def test_hostile_names_are_refused_and_an_existing_recording_is_never_recreated(store):
    for name in ("../x", "a/b", "", "..", str(uuid.uuid4()) + "/../../etc"):
        with pytest.raises(RecordingError):
            store.folder(name)
    recorder = new_recorder(store)
    with pytest.raises(RecordingError, match="it exists"):
        store.create(recorder.name)


def test_recover_keeps_what_a_killed_writer_flushed(s3server, bucket, store):
    recorder = new_recorder(store)
    recorder.output(b"kept before the kill\r\n")
    recorder.flush()
    recorder.output(b"lost with the process\r\n")  # queued, never flushed; the writer is never closed
    found = scan(store, recorder.name, KEY)
    assert found.complete is False and found.error is None
    seal = recover(store, recorder.name, KEY)
    assert seal["state"] == "interrupted"
    assert check(store, recorder.name, KEY, seal) == ("verified", None)
    events = [json.loads(line) for line in text_of(store, recorder.name).splitlines()[1:]]
    assert "".join(e[2] for e in events) == "kept before the kill\r\n"
    assert len(s3server.keys(bucket, f"recordings/{recorder.name}/")) == 3  # header, output, the end mark


def test_recover_drops_a_part_that_does_not_decrypt_and_what_follows(s3server, bucket, store):
    recorder = new_recorder(store)
    for text in (b"one\r\n", b"two\r\n", b"three\r\n"):
        recorder.output(text)
        recorder.flush()
    folder = f"recordings/{recorder.name}/"
    altered = folder + "0000000003.part"
    data = bytearray(s3server.client().get_object(Bucket=bucket, Key=altered)["Body"].read())
    data[-1] ^= 0x80
    s3server.client().put_object(Bucket=bucket, Key=altered, Body=bytes(data), ChecksumAlgorithm="SHA256")
    seal = recover(store, recorder.name, KEY)
    assert check(store, recorder.name, KEY, seal) == ("verified", None)
    assert "one" in text_of(store, recorder.name) and "two" not in text_of(store, recorder.name)
    assert s3server.keys(bucket, folder) == [folder + f"{n:010d}.part" for n in (1, 2, 3)]  # 3: the end mark


def test_an_object_without_its_checksum_does_not_read(s3server, bucket, store):
    recorder = new_recorder(store)
    recorder.output(b"hello\r\n")
    seal = recorder.finish()
    key = s3server.keys(bucket, f"recordings/{recorder.name}/")[0]
    client = s3server.client()
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body)  # the same bytes, stored without a checksum
    state, detail = check(store, recorder.name, KEY, seal)
    assert state == "altered" and "has no SHA-256 checksum" in detail
    with pytest.raises(RecordingError, match="SHA-256"):
        text_of(store, recorder.name)


def test_bytes_that_differ_from_the_kept_checksum_do_not_read(s3server, bucket, store):
    recorder = new_recorder(store)
    recorder.output(b"hello\r\n")
    seal = recorder.finish()

    class Rotting:
        """The real client, but the bytes of what it reads come back with one bit flipped (rot, a bad cable)."""

        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def get_object(self, **params):
            from botocore.response import StreamingBody

            answer = self.real.get_object(**params)
            data = bytearray(answer["Body"].read())
            data[len(data) // 2] ^= 0x01
            answer["Body"] = StreamingBody(io.BytesIO(bytes(data)), len(data))
            return answer

    rotten = S3Store(bucket, "recordings/", client=Rotting(s3server.client()))
    state, detail = check(rotten, recorder.name, KEY, seal)
    assert state == "altered" and "does not match its SHA-256 checksum" in detail
    assert check(store, recorder.name, KEY, seal) == ("verified", None)


def test_a_reader_goes_on_across_a_merge_and_a_stopped_merge_counts_once(s3server, bucket, store):
    recorder = new_recorder(store)
    for n in range(4):
        recorder.output(f"part {n}\r\n".encode())
        recorder.flush()
    before, size = text_of(store, recorder.name), store.size(recorder.name)
    with store.open(recorder.name) as handle:
        stored = handle.read()
    handle = store.open(recorder.name)
    first = handle.read(10)
    store.merge(recorder.name)  # another node closes it while this one reads
    assert first + handle.read() == stored and len(stored) == size and handle.tell() == size
    # a merge that stopped after writing the merged object: the small parts are still there
    folder = f"recordings/{recorder.name}/"
    merged = s3server.keys(bucket, folder)
    assert merged == [folder + "0000000001-0000000005.part"]
    client = s3server.client()
    for n in (1, 2):
        client.put_object(Bucket=bucket, Key=folder + f"{n:010d}.part", Body=b"left over", ChecksumAlgorithm="SHA256")
    assert store.size(recorder.name) == size and text_of(store, recorder.name) == before
    assert store.delete(recorder.name) and s3server.keys(bucket, folder) == []


def test_check_fails_closed_on_a_bucket_that_does_not_exist(s3server, bucket):
    S3Store(bucket, "p/", client=s3server.client()).check()
    assert s3server.keys(bucket) == []  # the probe is gone
    with pytest.raises(RecordingError, match=r"s3://gh-none-[0-9a-f]+/p/ cannot be written: NoSuchBucket"):
        S3Store("gh-none-" + uuid.uuid4().hex[:8], "p", client=s3server.client()).check()


def test_check_says_when_the_store_cannot_be_reached(s3server):
    nobody = f"http://127.0.0.1:{free_port()}"
    store = S3Store("gh-any-bucket", "p/", endpoint=nobody, region="us-east-1")
    with pytest.raises(RecordingError, match=f"s3://gh-any-bucket/p/ at {nobody} cannot be written: Could not connect"):
        store.check()


def test_open_store_follows_the_settings(s3server, bucket, tmp_path):
    local = open_store({"RECORDINGS_DIR": str(tmp_path), "RECORDINGS_S3_BUCKET": None})
    assert isinstance(local, LocalStore)
    remote = open_store({"RECORDINGS_DIR": str(tmp_path), **s3server.config(bucket, "/gh/rec")})
    assert isinstance(remote, S3Store) and remote.prefix == "gh/rec/"
    remote.check()


@pytest.mark.parametrize("name, value, words", [
    ("RECORDINGS_S3_BUCKET", "Not_A_Bucket", "is not a bucket name"),
    ("RECORDINGS_S3_ENDPOINT", "http://127.0.0.1:9000/some/path", "with no path"),
    ("RECORDINGS_S3_ENDPOINT", "ftp://127.0.0.1", "http(s)://host"),
    ("RECORDINGS_S3_PREFIX", "a/../b", "is not a key prefix"),
])
def test_nonsense_settings_stop_the_start_naming_the_variable(monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        Config()
    assert str(error.value).startswith(name) and words in str(error.value)


def test_retention_deletes_the_objects_and_verify_reads_the_rest(s3server, bucket, tmp_path, monkeypatch):
    from tests.test_recording_retention import add_session

    app = make_app(tmp_path, **s3server.config(bucket))  # events and recordings kept 7 days
    start = now_utc()
    with app.app_context():
        old = [add_session(monkeypatch, start)[0] for _ in range(2)]
        recent = add_session(monkeypatch, start + timedelta(days=9))[0]
        assert all(s3server.keys(bucket, f"recordings/{name}/") for name in old + [recent])
        result = audit_retention.prune(now=start + timedelta(days=10))
        assert any(note.startswith("pruned 2 recordings") for note in result.notes), result.notes
        assert [name for name in old if s3server.keys(bucket, f"recordings/{name}/")] == []
        assert s3server.keys(bucket, f"recordings/{recent}/") and open_store(app.config).names() == [recent]
        db.session.rollback()
    result = app.test_cli_runner().invoke(args=["audit", "verify", "--recordings"])  # read from the bucket
    assert result.exit_code == 0 and result.output.endswith("; 1 recordings verified\n"), result.output
    with app.app_context():
        db.engine.dispose()


def refusal(ws):
    """Return the error message a terminal gets instead of a session."""
    messages = []

    def error():
        frame = ws.receive(timeout=0.5)
        if isinstance(frame, str):
            messages.append(json.loads(frame))
        return next((m for m in messages if m.get("type") == "error"), None)

    return wait_for(error)


def no_secret_anywhere(server):
    """Assert that the secret key of the credentials is in no event and not in the server's log."""
    events = trail(server)[0]
    assert not [e for e in events if DUMMY_AWS["AWS_SECRET_ACCESS_KEY"] in json.dumps([e.message, e.details])]
    assert DUMMY_AWS["AWS_SECRET_ACCESS_KEY"] not in server.log_text()


def test_a_terminal_session_records_into_the_bucket_and_replays(live_servers, s3server, bucket, sshd):
    server = live_servers(**s3server.settings(bucket))
    http = server.login()
    device = server.add_device(http, sshd, "s3-recorded")
    ws = connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    session_id = session_of(ws)
    ws.send(b"echo s3-$((40+2))-rec\r")
    read_until(ws, b"s3-42-rec")
    store, key = S3Store(bucket, "recordings/", client=s3server.client()), server_key(server)
    wait_for(lambda: "s3-42-rec" in text_of(store, session_id, key))  # in the bucket while the session goes on
    ws.send(b"exit\r")
    seal = wait_ended(server, session_id).details["recording"]
    assert seal["state"] == "complete" and check(store, session_id, key, seal) == ("verified", None)
    folder = f"recordings/{session_id}/"
    merged = s3server.keys(bucket, folder)
    assert len(merged) == 1 and merged[0].startswith(folder + "0000000001-")  # its parts merged when it closed
    cast = http.get(f"{server.url}/sessions/{session_id}/recording.cast", timeout=30)
    assert cast.status_code == 200 and "s3-42-rec" in cast.text
    assert json.loads(cast.text.splitlines()[0])["version"] == 2
    page = http.get(f"{server.url}/sessions/{session_id}", timeout=30).text
    assert "verified" in page
    assert not any((server.workdir / "recordings").glob("*.rec"))  # nothing on this node's disk
    no_secret_anywhere(server)


def test_a_killed_node_leaves_its_recording_readable_up_to_its_last_flush(live_servers, s3server, bucket, sshd):
    server = live_servers(**s3server.settings(bucket))
    http = server.login()
    device = server.add_device(http, sshd, "s3-killed")
    ws = open_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    session_id = trail(server, "session.started")[0][-1].session_id
    ws.send(b"echo before-$((1+1))-kill\r")
    read_until(ws, b"before-2-kill")
    store, key = S3Store(bucket, "recordings/", client=s3server.client()), server_key(server)
    wait_for(lambda: "before-2-kill" in text_of(store, session_id, key))  # a flush took it to the bucket
    server.stop(signal.SIGKILL)
    assert scan(store, session_id, key).complete is False  # as the dead writer left it: no end mark
    server.start()  # the orphan sweep of the next start closes the session and seals what the bucket kept
    ended = wait_ended(server, session_id)
    seal = ended.details["recording"]
    assert ended.details["reason"] == "server_restart" and seal["state"] == "interrupted"
    assert check(store, session_id, key, seal) == ("verified", None)
    cast = server.login().get(f"{server.url}/sessions/{session_id}/recording.cast", timeout=30)
    assert cast.status_code == 200 and "before-2-kill" in cast.text


def test_a_bucket_that_does_not_exist_refuses_terminals(live_servers, s3server, sshd):
    missing_bucket = "gh-missing-" + uuid.uuid4().hex[:8]
    server = live_servers(**s3server.settings(missing_bucket))
    http = server.login()
    device = server.add_device(http, sshd, "s3-refused")
    error = refusal(connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url))
    assert error["reason"] == "recording" and "Recordings cannot be written" in error["message"]
    events = trail(server)[0]
    assert not [e for e in events if e.action == "session.started"]
    failed = [e for e in events if e.action == "session.failed"][-1]
    assert failed.details["reason"] == "recording_unavailable"
    assert f"the recordings bucket s3://{missing_bucket}/recordings/" in failed.message
    assert "cannot be written: NoSuchBucket" in failed.message
    no_secret_anywhere(server)


def test_a_writer_taken_for_dead_cannot_write_over_the_seal_another_node_made(store):
    recorder = new_recorder(store)
    recorder.output(b"before the partition\r\n")
    recorder.flush()
    seal = recover(store, recorder.name, KEY)  # another node's orphan sweep: its end mark is the next part
    recorder.output(b"written after the seal\r\n")
    recorder.flush()
    assert recorder.state == "failed" and "sealed elsewhere" in recorder.error
    assert check(store, recorder.name, KEY, seal) == ("verified", None)
    assert "after the seal" not in text_of(store, recorder.name)


def test_under_gevent_each_event_loop_has_its_own_client(s3server):
    # A kept-alive connection made on one thread's event loop cannot be used from another's (the thread pool
    # that flushes recordings): each loop gets its own client, and greenlets of one loop share theirs.
    script = """
from gevent import monkey; monkey.patch_all()
import gevent
from app.recording.s3client import shared_client
args = ("%s", "us-east-1")
hub = shared_client(*args)
assert gevent.spawn(shared_client, *args).get() is hub  # greenlets of one loop share it
pool = gevent.get_hub().threadpool.apply(shared_client, args)
assert pool is not hub  # a thread of the pool has its own
hub.create_bucket(Bucket="gh-loops")
hub.put_object(Bucket="gh-loops", Key="k", Body=b"x")
print(gevent.get_hub().threadpool.apply(lambda: shared_client(*args).get_object(Bucket="gh-loops", Key="k")["Body"].read()))
""" % s3server.endpoint
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "b'x'", done.stderr[-2000:]
