"""The trivial responder: a raw asyncio server that answers every HTTP/1.1 request with the same
OIP-like JSON, reading nothing but the headers and ``Content-Length`` bytes of body.

It costs the server almost nothing, so the requests/s the load generator reaches against it is
the generator's own ceiling on this machine: a peer measured well below it was not held back by
the generator.

    python -m benchmarks.serving.responder PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

ANSWER = json.dumps({
    "model_name": "trivial", "id": "0",
    "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [1, 10], "data": [0.1] * 10}],
}).encode()  # fmt: skip
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
    + ANSWER
)


class Responder(asyncio.Protocol):
    """One connection. With ``close_every``, it closes the connection instead of answering every
    ``close_every``-th request (for tests of a client's reconnection)."""

    def __init__(self, close_every: int | None = None) -> None:
        self._buffer = bytearray()
        self.seen = 0
        self.answered = 0
        self._close_every = close_every
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            total = end + 4 + _content_length(bytes(self._buffer[:end]))
            if len(self._buffer) < total:
                return
            del self._buffer[:total]
            self.seen += 1
            if self._close_every and self.seen % self._close_every == 0:
                self._transport.close()
                return
            self._transport.write(RESPONSE)
            self.answered += 1


async def start(
    host: str, port: int, close_every: int | None = None, connections: list[Responder] | None = None
) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port) in the running event loop; each connection's
    protocol is appended to ``connections`` when given (tests count what was answered)."""

    def connection() -> Responder:
        protocol = Responder(close_every)
        if connections is not None:
            connections.append(protocol)
        return protocol

    return await asyncio.get_running_loop().create_server(connection, host, port)


def _content_length(head: bytes) -> int:
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = lower.find(b"\r\n", at + 2)
    return int(lower[at + 17 : end if end >= 0 else len(lower)])


async def _serve_forever(port: int) -> None:
    server = await start("127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve_forever(int(sys.argv[1])))
