"""A fault-injecting TCP proxy on 127.0.0.1 for tests: cut, black-hole, delay and slice traffic.

    proxy = FaultProxy(upstream_port)
    await proxy.start()            # clients connect to proxy.port
    proxy.cut()                    # reset every live connection (the client sees a drop)
    proxy.blackhole = True         # half-open: sockets stay open, nothing is forwarded
    proxy.delay = 0.05             # seconds added to every chunk
    proxy.slice = 7                # forward in writes of at most 7 bytes
    await proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.blackhole = False
        self.delay = 0.0
        self.slice = 0
        self.refuse = False
        """Close new connections at once (the server looks down)."""
        self.connections_made = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> "FaultProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def cut(self) -> int:
        """Abort every live connection; returns how many were cut."""
        links = list(self._links)
        for client, upstream in links:
            for writer in (client, upstream):
                writer.transport.abort()
        self._links.clear()
        return len(links)

    @property
    def live(self) -> int:
        return len(self._links)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections_made += 1
        link = (client_writer, upstream_writer)
        self._links.add(link)
        for reader, writer in ((client_reader, upstream_writer), (upstream_reader, client_writer)):
            task = asyncio.create_task(self._pipe(reader, writer, link))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.blackhole:
                    continue  # swallowed: the peer never hears of it, the socket stays open
                if self.delay:
                    await asyncio.sleep(self.delay)
                step = self.slice or len(data)
                for i in range(0, len(data), step):
                    writer.write(data[i : i + step])
                    await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(link)
            for w in link:
                w.transport.abort()
