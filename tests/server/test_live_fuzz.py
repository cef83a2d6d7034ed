"""Hypothesis-generated frames against a live server: JSON of every shape, wrong types, huge
numbers, deep nesting, long strings, random bytes, invalid UTF-8 and lone surrogates. Every frame
the protocol refuses is answered with that refusal's error code, anything else with no internal
error; a frame no WebSocket may carry ends the connection with the proper close code; the server
never crashes, logs no error, and keeps serving a bystander.

Long form: ``TUI_CHAT_FUZZ_FRAMES=10000 pytest tests/server/test_live_fuzz.py --timeout 0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tui_chat_dev.wsclient import signup
from tui_chat import protocol as p

FRAMES = int(os.environ.get("TUI_CHAT_FUZZ_FRAMES", "600"))
FIELDS = ["action", "id", "to", "with", "body", "before", "after", "limit", "cursor", "status", "text", "seq", "rid",
          "room", "title", "members", "user"]  # fmt: skip
ACTIONS = ["sendMessage", "getMessages", "markRead", "setStatus", "typing", "ping", "getClients", "getConversations",
           "createRoom", "getRoom", "invite", "leaveRoom", "removeMember", "setRoomTitle", "getReads"]  # fmt: skip
FRAMES_PER_CONNECTION = 200
"""Two frames per example (the fuzz frame and a ping): a fresh connection before the server's
bucket (bursts of 500) runs dry, so every frame is judged on its content, not on the rate."""

# -- frames ---------------------------------------------------------------------------------------

lone_surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(exclude_categories=[]), max_size=40),  # surrogates and control characters too
    st.sampled_from(["alice-fuzz", "fuzzer", "bob", "#room", "#fuzz-room", "#ROOM", "'; DROP TABLE messages; --", "\x1b[2J", "\u202e"]),
    st.builds(lambda c, n: c * n, st.sampled_from(["y", "é", "😀"]), st.sampled_from([100, 5_000, 40_000, 140_000])),
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70), st.sampled_from([2**63, -(2**63) - 1, 10**30, 10**400]),
    st.floats(),  # NaN and Infinity are not JSON: the server must say so
)  # fmt: skip
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(texts, kids, max_size=4), max_leaves=10)
plausible = st.fixed_dictionaries({"action": st.sampled_from(ACTIONS)}, optional={f: values | texts for f in FIELDS if f != "action"})
anything = st.dictionaries(st.sampled_from(FIELDS) | texts, values, max_size=6)


@dataclass(frozen=True)
class Frame:
    payload: str | bytes
    kind: str = "text"
    """``text``, ``binary``, or ``raw-text``: bytes sent as a text frame, UTF-8 or not."""


def as_json(obj, ascii_only: bool) -> Frame:
    text = json.dumps(obj, ensure_ascii=ascii_only)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot travel raw: escaped, as a sender would
        text = json.dumps(obj)
    return Frame(text)


well_formed_sends = st.builds(
    lambda n, body, ascii_only: as_json({"action": "sendMessage", "id": f"fuzz-{n:08d}", "to": "alice-fuzz", "body": body}, ascii_only),
    st.integers(0, 10**8), texts, st.booleans(),
)  # fmt: skip

frames = st.one_of(
    well_formed_sends,
    st.builds(as_json, plausible, st.booleans()),
    st.builds(as_json, anything, st.booleans()),
    st.builds(as_json, values, st.booleans()),  # arrays, strings, numbers, null at the top
    st.integers(1, 100_000).map(lambda n: Frame("[" * n + "]" * n)),  # deep nesting
    st.integers(1, 5_000).map(lambda n: Frame('{"a":' * n + "1" + "}" * n)),
    st.text(max_size=200).map(Frame),  # not JSON at all
    st.binary(max_size=200).map(lambda b: Frame(b, "raw-text")),  # random bytes, mostly invalid UTF-8
    st.binary(min_size=1, max_size=200).map(lambda b: Frame(b, "binary")),
    st.sampled_from([
        Frame(b'{"action":"ping","rid":"\xff\xfe"}', "raw-text"),  # invalid UTF-8 inside a string
        Frame(b'{"action":"ping","rid":"\xed\xa0\x80"}', "raw-text"),  # a surrogate encoded in UTF-8
        Frame('{"action":"sendMessage","id":"fuzz-0000001","to":"alice-fuzz","body":"\\ud800"}'),
        Frame('{"action":"ping","action":"sendMessage"}'),
        Frame('{"action":"ping"}' + " " * 40_000),  # over the 32 KiB action limit
        Frame("x" * (p.MAX_FRAME_BYTES + 1)),  # over the WebSocket frame limit
    ]),
)  # fmt: skip


# -- what the server must answer --------------------------------------------------------------------


def expected_close(frame: Frame) -> set[int] | None:
    """Close codes a WebSocket server must answer this frame with, or None if it must not close."""
    if frame.kind == "binary":
        return {p.CLOSE_POLICY}
    size = len(frame.payload.encode("utf-8", "surrogatepass") if isinstance(frame.payload, str) else frame.payload)
    if size > p.MAX_FRAME_BYTES:
        # 1009; or, when the server closes while the rest of the frame is still arriving, its
        # kernel resets the socket and the close frame may be lost with it (1006 here)
        return {p.CLOSE_TOO_BIG, 1006}
    if frame.kind == "raw-text":
        try:
            frame.payload.decode("utf-8")
        except UnicodeDecodeError:
            return {1007}  # invalid frame payload data
    return None


def parsed(frame: Frame) -> p.Action | p.ProtocolError:
    """The action the protocol reads in this frame, or its refusal."""
    raw = frame.payload if isinstance(frame.payload, str) else frame.payload.decode("utf-8")
    try:
        return p.parse_action(raw)
    except p.ProtocolError as exc:
        return exc


class Session:
    """One fuzzing connection, renewed after a close or every FRAMES_PER_CONNECTION frames."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.stack = contextlib.ExitStack()
        self.sent = 0
        self.closes: dict[int, int] = {}
        self.pings = 0

    def connection(self) -> ClientConnection:
        if self.ws is None or self.sent >= FRAMES_PER_CONNECTION:
            self.close()
            self.ws = self.stack.enter_context(connect(self.url, max_size=None, open_timeout=10, close_timeout=5))
            self.sent = 0
        return self.ws

    def close(self) -> None:
        self.stack.close()
        self.ws = None

    def send(self, frame: Frame) -> list[dict] | int:
        """Send ``frame`` and a ping; the frames answered before the pong, or the close code."""
        ws = self.connection()
        self.pings += 1
        rid = f"fuzz-ping-{self.pings}"
        try:
            if frame.kind == "binary":
                ws.send(frame.payload, text=False)
            elif frame.kind == "raw-text":
                ws.send(frame.payload, text=True)
            else:
                ws.send(frame.payload)
            ws.send(json.dumps({"action": "ping", "rid": rid}))
            self.sent += 2
            answers = []
            while True:
                answer = json.loads(ws.recv(timeout=10))
                if answer.get("type") == "pong" and answer.get("rid") == rid:
                    return answers
                answers.append(answer)
        except ConnectionClosed:
            code = ws.protocol.close_code
            self.close()
            self.closes[code] = self.closes.get(code, 0) + 1
            return code


def test_random_frames_never_crash_the_server(server):
    if server.runtime == "lambda":
        return  # the same core and parser; the emulator run would only repeat this slowly
    token = asyncio.run(signup(server.http_url, "fuzzer"))
    witness_token = asyncio.run(signup(server.http_url, "alice-fuzz"))
    session = Session(f"{server.ws_url}?token={token}&device=fuzz-device-01")
    stored: dict[str, str] = {}  # the well-formed messages the server acked, by id
    with connect(f"{server.ws_url}?token={witness_token}&device=witness-dev-01", max_queue=None) as witness:

        @settings(max_examples=FRAMES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), print_blob=True)  # fmt: skip
        @given(frames)
        def one(frame: Frame) -> None:
            outcome = session.send(frame)
            must_close = expected_close(frame)
            if must_close is not None:
                assert outcome in must_close, f"closed with {outcome}, expected one of {must_close}"
            else:
                assert isinstance(outcome, list), f"the server closed the connection ({outcome}) on a frame it should answer"
                codes = [a.get("code") for a in outcome if a.get("type") == "error"]
                assert p.INTERNAL not in codes, f"an internal error: {outcome}"
                action = parsed(frame)
                if isinstance(action, p.ProtocolError):
                    assert codes == [action.code], f"refused with {codes}, expected [{action.code}]"
                elif isinstance(action, p.SendMessage) and action.to == "alice-fuzz" and not codes:
                    [ack] = [a for a in outcome if a.get("type") == "ack" and a.get("id") == action.id]
                    stored.setdefault(action.id, action.body)  # a repeated id keeps the first body
                    assert ack["message"]["body"] == stored[action.id], "the ack carries the stored body"

        try:
            one()
        finally:
            session.close()

        witness.send(json.dumps({"action": "ping", "rid": "still-there"}))
        heard = [json.loads(witness.recv(timeout=10))]  # messages the fuzzer sent and presence come first
        while heard[-1] != {"type": "pong", "rid": "still-there"}:
            assert heard[-1].get("type") in ("message", "presence"), f"others are still served, not {heard[-1]}"
            heard.append(json.loads(witness.recv(timeout=10)))
        delivered = {h["message"]["id"]: h["message"]["body"] for h in heard if h["type"] == "message"}
        assert delivered == stored, "the bystander got every acked message once, its body literally"
    assert server.proc.poll() is None, "the server process is alive"
    errors = [line for line in server.log_lines if line.get("level") in ("error", "critical")]
    assert not errors, f"the server logged errors: {errors[:3]}"
    assert httpx.get(server.http_url + "/healthz").status_code == 200
    print(f"fuzzed {FRAMES} frames; closes by code: {session.closes}; {len(stored)} messages stored and delivered")
