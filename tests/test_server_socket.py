"""`ttsq api`'s listening socket (`api/server.py`)."""

from __future__ import annotations

import asyncio
import socket

from api.server import listen


def test_connections_are_accepted_with_nagle_off() -> None:
    """asyncio turns Nagle's algorithm off only on sockets that say they are TCP; with it on,
    every answer after a connection's first waited 40 ms for the client's delayed ACK."""

    async def main() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        sock = listen("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        nodelay = await asyncio.wait_for(accepted, 5)
        writer.close()
        server.close()
        return nodelay

    assert asyncio.run(main()) != 0
