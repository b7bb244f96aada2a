"""A minimal asyncio websocket client (RFC 6455) for the bench's load generator: binary and text frames out,
masked; frames in, unfragmented or fragmented; ping answered. Cheap enough that hundreds of terminals cost the
generator little next to the gateway it measures."""
import asyncio
import base64
import os
import struct
from urllib.parse import urlsplit


class HandshakeError(Exception):
    """The server did not switch to the websocket protocol."""


class WebSocket:
    """One client connection."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url, headers):
        """Open a connection to a ws:// URL with extra request headers."""
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1",
                 f"Host: {parts.hostname}:{parts.port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = await reader.readuntil(b"\r\n\r\n")
        if not answer.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise HandshakeError(answer.split(b"\r\n", 1)[0].decode(errors="replace"))
        return cls(reader, writer)

    async def send(self, data, opcode=2):
        """Send one frame (binary by default), masked as a client must."""
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        if n:
            # XOR with the repeated mask, as one big integer: fast enough for keystrokes and pastes alike.
            whole = (mask * (n // 4 + 1))[:n]
            data = (int.from_bytes(data, "big") ^ int.from_bytes(whole, "big")).to_bytes(n, "big")
        self.writer.write(head + mask + data)
        await self.writer.drain()

    async def _frame(self):
        """Read one frame: (fin, opcode, payload)."""
        first, second = await self.reader.readexactly(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return bool(first & 0x80), first & 0x0F, await self.reader.readexactly(n)

    async def receive(self):
        """Return the next message as (opcode, payload); (None, b"") once the server closed."""
        parts, kind = [], None
        while True:
            try:
                fin, opcode, payload = await self._frame()
            except (asyncio.IncompleteReadError, ConnectionError):
                return None, b""
            if opcode == 8:
                return None, b""
            if opcode == 9:
                await self.send(payload, opcode=10)
                continue
            if opcode == 10:
                continue
            kind = kind or opcode
            parts.append(payload)
            if fin:
                return kind, b"".join(parts)

    async def close(self):
        """Send a normal close and drop the connection."""
        try:
            await self.send(struct.pack("!H", 1000), opcode=8)
            await self.writer.drain()
        except ConnectionError:
            pass
        self.writer.close()
