"""Attachments on the self-hosted server (a script, not a test): upload and download throughput of a
20 MiB file beside ``curl`` against the same server in the same run, and whether the server's
memory grows with the size of the file it streams.

    .venv/bin/python benchmarks/file_bench.py [--runs N] [--mib N]

A fresh real server (``tui-chat serve`` on 127.0.0.1 with an empty database, through
``tui_chat_dev.serverproc``) and one signed-in user. Each run, for each client in turn (their order
alternates from run to run):

- upload: ``requestUpload`` for a new ``--mib`` MiB random file, then the ``PUT`` of its bytes to
  the URL the server gave (timed: the PUT alone, from its first byte to the server's answer, which
  comes after the bytes are hashed, fsynced and renamed);
- download: ``requestDownload`` for it, then the ``GET`` (timed: to the last byte received).

The clients are ``httpx`` (what the tui-chat client uses, streaming from and to disk) and ``curl``
(``--data-binary @file`` / ``-o file``). Figures are MiB/s, medians of ``--runs`` (5).

Memory: the server's RSS (psutil) is sampled every 10 ms while a 1 MiB, a 20 MiB and a 100 MiB file
go up and come down; reported is the highest RSS during each, minus the RSS before it. A server that
held files whole in memory would grow by their size.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui_chat_dev.serverproc import start_server  # noqa: E402
from tui_chat_dev.wsclient import WsClient, signup  # noqa: E402

MIB = 1024 * 1024


def random_file(folder: Path, size: int) -> tuple[Path, str]:
    path = folder / f"file-{size}-{time.monotonic_ns()}"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, MIB))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return path, digest.hexdigest()


async def announce(client: WsClient, path: Path, sha: str) -> dict:
    reply = await client.request({"action": "requestUpload", "name": path.name, "size": path.stat().st_size,
                                  "type": "application/octet-stream", "sha256": sha})  # fmt: skip
    assert reply["type"] == "upload", reply
    return reply


async def download_url(client: WsClient, file_id: str) -> str:
    reply = await client.request({"action": "requestDownload", "fileId": file_id})
    assert reply["type"] == "download", reply
    return reply["url"]


async def httpx_put(url: str, path: Path) -> float:
    async def chunks():
        with path.open("rb") as source:
            while chunk := source.read(256 * 1024):
                yield chunk

    headers = {"content-length": str(path.stat().st_size)}
    async with httpx.AsyncClient(timeout=120) as http:
        start = time.perf_counter()
        response = await http.put(url, content=chunks(), headers=headers)
        elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.text
    return elapsed


async def httpx_get(url: str, target: Path) -> float:
    async with httpx.AsyncClient(timeout=120) as http:
        start = time.perf_counter()
        async with http.stream("GET", url) as response:
            assert response.status_code == 200
            with target.open("wb") as out:
                async for chunk in response.aiter_bytes(256 * 1024):
                    out.write(chunk)
        return time.perf_counter() - start


def curl(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


async def one_round(client: WsClient, folder: Path, size: int, tool: str) -> tuple[float, float]:
    """Seconds for the upload and the download of one new file of ``size`` bytes with ``tool``."""
    path, sha = random_file(folder, size)
    ticket = await announce(client, path, sha)
    if tool == "httpx":
        up = await httpx_put(ticket["url"], path)
    else:
        up = await asyncio.to_thread(curl, "-X", "PUT", "-H", "content-type: application/octet-stream",
                                     "--data-binary", f"@{path}", ticket["url"])  # fmt: skip
    url = await download_url(client, ticket["fileId"])
    target = folder / "downloaded"
    down = await httpx_get(url, target) if tool == "httpx" else await asyncio.to_thread(curl, "-o", str(target), url)
    assert target.stat().st_size == size
    path.unlink()
    target.unlink()
    return up, down


class PeakRss:
    """The highest RSS of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRss":
        self.before = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = start_server(folder / "server", extra_args=("--max-file-size", str(200 * MIB)))
        try:
            client = await WsClient.open(server.ws_url, await signup(server.http_url, "bench"), "bench")
            size = args.mib * MIB
            await one_round(client, folder, MIB, "httpx")  # warm-up
            times: dict[str, list[tuple[float, float]]] = {"httpx": [], "curl": []}
            for run in range(args.runs):
                for tool in (("httpx", "curl") if run % 2 == 0 else ("curl", "httpx")):
                    times[tool].append(await one_round(client, folder, size, tool))
            print(f"{args.mib} MiB file, median of {args.runs} runs (MiB/s):")
            for tool, rounds in times.items():
                up = statistics.median(args.mib / t for t, _ in rounds)
                down = statistics.median(args.mib / t for _, t in rounds)
                print(f"  {tool:6} upload {up:7.1f}   download {down:7.1f}")
            print("server RSS growth while a file goes up and comes down (MiB):")
            for mib in (1, 20, 100):
                with PeakRss(server.proc.pid) as rss:
                    await one_round(client, folder, mib * MIB, "httpx")
                print(f"  {mib:4} MiB file: +{(rss.peak - rss.before) / MIB:.1f} (RSS before {rss.before / MIB:.1f})")
            await client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
