"""A third user cannot read or move another pair's conversation, whatever the fields say."""

from __future__ import annotations

import base64
import json

from tests.security.helpers import conversation, user

SECRET = "alice-to-bob-private-7f3a"


def with_tricks(alice: str, bob: str) -> list:
    """Values for ``with`` that try to name the alice-bob conversation instead of one of carol's."""
    return [
        alice, bob, alice.upper(), f" {alice}", f"{alice} ", f"{alice}\n", f"\t{bob}",
        f"{alice}#{bob}", f"{bob}#{alice}", f"c#{alice}#{bob}", f"#{alice}", f"{alice}|{bob}", f"{alice}:{bob}",
        f"{alice},{bob}", f"{alice}/{bob}", f"{alice}\x00{bob}", f"{alice}%23{bob}", f"{alice}' OR '1'='1",
        "*", "%", "_", "", f"{alice}\u200d", "\u0430" + alice[1:],
        [alice, bob], [alice], {"S": alice}, {"with": alice}, {"user_a": alice, "user_b": bob}, 0, True, None,
    ]  # fmt: skip


def cursor_tricks(alice: str, bob: str) -> list:
    def dynamo(*parts) -> str:
        return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")

    return [
        "", f"0:{alice}", f"9223372036854775807:{bob}", f"-1:{alice}' OR '1'='1", f"{2**62}:{alice}:{bob}",
        dynamo(bob, 2**52), dynamo(alice, 0), dynamo({"user": alice}, 1), base64.b64encode(json.dumps({"user": {"S": alice}}).encode()).decode(),
        [alice], {"user": alice}, 5,
    ]  # fmt: skip


async def test_carol_never_reads_or_moves_the_alice_bob_conversation(server, names):
    alice = await user(server, names, "alice")
    bob = await user(server, names, "bob")
    carol = await user(server, names, "carol")
    for i in range(3):
        await alice.request({"action": "sendMessage", "id": f"priv-a{i:05d}", "to": bob.user, "body": f"{SECRET} {i}"})
    await bob.request({"action": "sendMessage", "id": "priv-b00001", "to": alice.user, "body": f"{SECRET} reply"})
    await bob.send({"action": "markRead", "with": alice.user, "seq": 2})
    await carol.request({"action": "sendMessage", "id": "carol-0001", "to": alice.user, "body": "hi alice, carol here"})
    before = (await conversation(alice, bob.user), await conversation(bob, alice.user))
    await alice.drain(), await bob.drain()

    seen: list[dict] = []  # every frame carol gets
    for trick in with_tricks(alice.user, bob.user):
        seen.append(await carol.request({"action": "getMessages", "with": trick}))
        seen.append(await carol.request({"action": "getMessages", "with": trick, "after": 0, "limit": 200}))
        for seq in (1, 4, 2**53 - 1):
            await carol.send({"action": "markRead", "with": trick, "seq": seq})
    for cursor in cursor_tricks(alice.user, bob.user):
        seen.append(await carol.request({"action": "getConversations", "cursor": cursor}))
    seen += await carol.drain()

    assert SECRET not in json.dumps(seen, ensure_ascii=False), "carol saw a message of alice and bob"
    for frame in seen:
        items = frame.get("items", []) if frame["type"] in ("messages", "conversations") else []
        messages = [i.get("last") or {} for i in items] if frame["type"] == "conversations" else items
        assert all(carol.user in (m["from"], m["to"]) for m in messages if m), frame
        assert frame["type"] != "read" or frame["with"] == alice.user, frame
    # alice and bob's markers are where they were; nobody told them anything about each other
    assert (await conversation(alice, bob.user), await conversation(bob, alice.user)) == before
    assert not [f for f in await bob.drain() if f["type"] in ("read", "message")]
    assert all(f["with"] == carol.user for f in await alice.drain() if f["type"] == "read")


async def test_identity_fields_in_a_frame_are_ignored(server, names):
    """test_live_protocol.py covers ``from``; these are the other names a spoof might try."""
    alice = await user(server, names, "alice")
    bob = await user(server, names, "bob")
    spoof = {"from": bob.user, "sender": bob.user, "user": bob.user, "username": bob.user, "by": bob.user,
             "message": {"from": bob.user, "to": alice.user}, "conn": "x", "device": bob.device}  # fmt: skip
    ack = await alice.request({"action": "sendMessage", "id": "spoof-00001", "to": bob.user, "body": "me", **spoof})
    assert (ack["message"]["from"], ack["message"]["to"]) == (alice.user, bob.user)
    assert (await bob.expect("message"))["message"]["from"] == alice.user
    await bob.send({"action": "markRead", "with": alice.user, "seq": 1, **spoof, "by": alice.user})
    assert (await alice.expect("read"))["by"] == bob.user
    await bob.request({"action": "getClients"})  # bob watches presence
    await alice.send({"action": "setStatus", "status": "busy", "text": "spoof", "user": bob.user})
    presence = await bob.expect("presence", user=alice.user, status="busy")
    assert presence["text"] == "spoof"
    bob_presence = [f for f in await bob.drain() if f["type"] == "presence" and f["user"] == bob.user]
    assert all((f["status"], f["text"]) == ("online", "") for f in bob_presence), "bob's status is his own"
