"""A fault-injecting TCP proxy on 127.0.0.1 for tests: cut, black-hole, delay and slice traffic.

    proxy = FaultProxy(upstream_port)
    await proxy.start()            # clients connect to proxy.port
    proxy.cut()                    # reset every live connection (the client sees a drop)
    proxy.blackhole = True         # half-open: sockets stay open, nothing gets through
    proxy.blackhole_down = True    # only server -> client is held (acks never arrive)
    await proxy.wait_sent_up(n)    # until n more bytes reached the server
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
        self._held = {"both": False, "up": False, "down": False}
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.bytes_up = 0
        """Bytes forwarded to the server so far."""
        self._forwarded = asyncio.Event()
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

    # A black hole holds bytes back; it never drops some and delivers later ones. That is what
    # TCP does when a path goes dark: the stream stalls, then either resumes whole (the path
    # came back) or dies with the connection (an endpoint gave up and reset it).

    @property
    def blackhole(self) -> bool:
        return self._held["both"]

    @blackhole.setter
    def blackhole(self, value: bool) -> None:
        self._hold("both", value)

    @property
    def blackhole_up(self) -> bool:
        """Hold client -> server bytes only."""
        return self._held["up"]

    @blackhole_up.setter
    def blackhole_up(self, value: bool) -> None:
        self._hold("up", value)

    @property
    def blackhole_down(self) -> bool:
        """Hold server -> client bytes only: the server acts, the client never hears of it."""
        return self._held["down"]

    @blackhole_down.setter
    def blackhole_down(self, value: bool) -> None:
        self._hold("down", value)

    def _hold(self, direction: str, value: bool) -> None:
        self._held[direction] = bool(value)
        if any(self._held.values()):
            self._flowing.clear()
        else:
            self._flowing.set()

    def _holding(self, up: bool) -> bool:
        return self._held["both"] or self._held["up" if up else "down"]

    def heal(self) -> None:
        """Back to a clean link (live connections stay up)."""
        self.blackhole = self.blackhole_up = self.blackhole_down = self.refuse = False
        self.delay = 0.0
        self.slice = 0

    async def wait_sent_up(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` more bytes than now have been forwarded to the server."""
        target = self.bytes_up + count
        async with asyncio.timeout(timeout):
            while self.bytes_up < target:
                self._forwarded.clear()
                await self._forwarded.wait()

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
        for reader, writer, up in ((client_reader, upstream_writer, True), (upstream_reader, client_writer, False)):
            task = asyncio.create_task(self._pipe(reader, writer, link, up))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link, up: bool) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                while self._holding(up):
                    await self._flowing.wait()  # held, in order, until healed or reset
                if self.delay:
                    await asyncio.sleep(self.delay)
                step = self.slice or len(data)
                for i in range(0, len(data), step):
                    writer.write(data[i : i + step])
                    await writer.drain()
                if up:
                    self.bytes_up += len(data)
                    self._forwarded.set()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(link)
            for w in link:
                w.transport.abort()
