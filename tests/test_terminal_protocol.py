"""Hostile websocket input: deep JSON, invalid UTF-8 text frames; answered in the protocol, recorded right."""
import base64
import json
import os
import re
import socket
import struct
import time
import uuid

from tests.support import open_terminal, read_until
from tests.test_login_sessions import wait_for_event


def masked_frame(opcode, payload):
    """Build one client websocket frame (clients must mask) with a final bit and the given opcode."""
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    length = len(payload)
    if length < 126:
        header += bytes([0x80 | length])
    elif length < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", length)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_terminal(server, http, device_id):
    """Open the terminal websocket on a plain socket (to send frames no client library would)."""
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall((f"GET /terminals/{device_id}/ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\nOrigin: {server.url}\r\nCookie: {cookie}\r\n\r\n").encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    return raw


def test_deeply_nested_json_is_an_error_message_not_a_crash(live_server, sshd):
    http = live_server.login()
    device_id = live_server.add_device(http, sshd, "deep-" + uuid.uuid4().hex[:6])
    ws = open_terminal(f"{live_server.ws_url}/terminals/{device_id}/ws", http, live_server.url)
    ws.send("[" * 200_000)
    deadline, controls = time.monotonic() + 5, []
    while time.monotonic() < deadline and not controls:
        frame = ws.receive(timeout=0.2)
        if isinstance(frame, str):
            controls.append(json.loads(frame))
    assert controls and controls[0]["type"] == "error" and "control message" in controls[0]["message"]
    ws.send(b"echo still-$((2+2))\n")
    read_until(ws, b"still-4")
    ws.close()


def test_invalid_utf8_text_frame_ends_as_protocol_error(live_server, sshd):
    http = live_server.login()
    device = "utf-" + uuid.uuid4().hex[:6]
    device_id = live_server.add_device(http, sshd, device)
    raw = raw_terminal(live_server, http, device_id)
    time.sleep(1)  # let the shell open
    raw.sendall(masked_frame(0x1, b"\xff\xfe\xfd"))
    seen = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = raw.recv(65536)
        if not chunk:
            break
        seen += chunk
    raw.close()
    assert re.search(rb"\x88[\x02-\x7d]\x03\xef", seen), seen[-200:]  # a close frame, status 1007 (invalid data)
    ended, _ = wait_for_event(live_server, "session.ended", lambda e: e.target.startswith(device + " "))
    assert ended.details["reason"] == "protocol_error"
