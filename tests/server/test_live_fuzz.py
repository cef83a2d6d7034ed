"""Random frames against a live server: every one is answered or closes that connection properly,
and the server keeps serving others. ``TUI_CHAT_FUZZ_FRAMES=10000`` for the long form."""

from __future__ import annotations

import json
import os
import random

import httpx

from tests.wsclient import WsClient, signup

FRAMES = int(os.environ.get("TUI_CHAT_FUZZ_FRAMES", "600"))
FIELDS = ["action", "id", "to", "with", "body", "before", "after", "limit", "cursor", "status", "text", "seq", "rid"]


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**63, 10**30, 1.5, -0.0])
    if kind == 2:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x250), 0x1B, 0x202E, 0xD800])) for _ in range(rng.randrange(0, 40)))
    if kind == 3:
        return rng.choice(["sendMessage", "getMessages", "markRead", "setStatus", "typing", "ping", "getClients", "getConversations"])
    if kind == 4:
        return rng.choice(["alice-fuzz", "bob", "#room", "'; DROP TABLE messages; --", "x" * 70, "abcdefgh12"])
    if kind == 5:
        return "y" * rng.choice([1, 100, 5000, 40000])
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(FIELDS): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def random_frame(rng: random.Random) -> str | bytes:
    roll = rng.random()
    if roll < 0.05:
        return "[" * rng.randrange(1, 5000)
    if roll < 0.1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))).decode("latin-1")
    if roll < 0.15:
        return '{"action":"sendMessage","id":"fuzz-0000001","to":"alice-fuzz","body":"\\ud800"}'
    frame = {rng.choice(FIELDS): random_value(rng) for _ in range(rng.randrange(1, 7))}
    text = json.dumps(frame, ensure_ascii=rng.random() < 0.5)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot travel raw; send it escaped
        text = json.dumps(frame)
    return text


async def test_random_frames_never_crash_the_server(server):
    if "lambda" in server.extra_args:
        return  # the same core and parser; the emulator run would only repeat this slowly
    token = await signup(server.http_url, "fuzzer")
    witness = await WsClient.open(server.ws_url, await signup(server.http_url, "alice-fuzz"), "alice-fuzz")
    rng = random.Random(int(os.environ.get("TUI_CHAT_FUZZ_SEED", "1234")))
    fuzzer = await WsClient.open(server.ws_url, token, "fuzzer")
    sent = reconnects = 0
    while sent < FRAMES:
        batch = [random_frame(rng) for _ in range(50)]
        try:
            for frame in batch:
                await fuzzer.send(frame)
            sent += len(batch)
            await fuzzer.request({"action": "ping"})  # every earlier frame was handled
        except Exception:
            code = fuzzer.ws.close_code
            assert code in (1008, 1009), f"a proper close, not {code}"
            reconnects += 1  # a proper close (1009 for >128 KiB, 1008 far past the rate limit): come back
            fuzzer = await WsClient.open(server.ws_url, token, "fuzzer")
            sent += len(batch)
        assert (await witness.request({"action": "ping"}))["type"] == "pong", "others are still served"
    assert server.proc.poll() is None, "the server process is alive"
    errors = [line for line in server.log_lines if line.get("level") == "error"]
    assert not errors, f"the server logged errors: {errors[:3]}"
    assert httpx.get(server.http_url + "/healthz").status_code == 200
    print(f"fuzzed {sent} frames, {reconnects} closes")
