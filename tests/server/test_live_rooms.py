"""Rooms (PROTOCOL.md 7.2) against both runtimes: the self-hosted server and the Lambda handlers
behind the API Gateway emulator, through real WebSocket clients on 127.0.0.1."""

from __future__ import annotations

import pytest

from tui_chat_dev.wsclient import WsClient, signup


async def user(server, names, prefix="u", device="device-0001"):
    name = names(prefix)
    token = await signup(server.http_url, name)
    return await WsClient.open(server.ws_url, token, name, device), token


async def room_of(server, names, count: int, title: str = "The lab"):
    """``count`` connected users and a room the first one created with the others in it."""
    people = [(await user(server, names, f"m{i}"))[0] for i in range(count)]
    room = "#" + names("lab")
    created = await people[0].request({"action": "createRoom", "room": room, "title": title, "members": [p.user for p in people[1:]]})
    assert created["type"] == "room", created
    for other in people[1:]:
        await other.expect("room", room=room)
    return room, people


def send_frame(to: str, msg_id: str, body: str = "hello") -> dict:
    return {"action": "sendMessage", "id": msg_id, "to": to, "body": body}


async def test_creating_a_room_tells_every_member_and_a_taken_name_conflicts(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    room = "#" + names("Lab").lower()
    reply = await alice.request({"action": "createRoom", "room": room.upper(), "title": "Lab", "members": [bob.user.upper()]})
    assert {k: reply[k] for k in ("type", "room", "title", "owner", "members")} == {
        "type": "room", "room": room, "title": "Lab", "owner": alice.user, "members": [alice.user, bob.user],
    }  # fmt: skip
    told = await bob.expect("room", room=room)
    assert "rid" not in told and told["members"] == [alice.user, bob.user]
    taken = await bob.request({"action": "createRoom", "room": room})
    assert (taken["type"], taken["code"]) == ("error", "conflict")
    unknown = await alice.request({"action": "createRoom", "room": "#" + names("other"), "members": ["nobody-here"]})
    assert (unknown["type"], unknown["code"]) == ("error", "unknown_user")


async def test_a_room_message_reaches_every_member_and_the_senders_other_devices(server, names):
    room, (alice, bob, carol) = await room_of(server, names, 3)
    outsider, _ = await user(server, names, "outsider")
    ack = await alice.request(send_frame(room, "room-0000001", "hello room"))
    assert ack["type"] == "ack" and (ack["message"]["to"], ack["message"]["seq"]) == (room, 1)
    for member in (bob, carol):
        assert (await member.expect("message"))["message"] == ack["message"]
    assert not [f for f in await alice.drain() if f["type"] == "message"], "the sending connection gets the ack only"
    assert not [f for f in await outsider.drain() if f["type"] == "message"]


async def test_non_members_get_the_same_forbidden_for_every_action_whether_or_not_the_room_exists(server, names):
    room, (alice, _bob) = await room_of(server, names, 2)
    await alice.request(send_frame(room, "room-0000001", "members only"))
    mallory, _ = await user(server, names, "mallory")
    missing = "#" + names("nowhere")
    actions = [
        send_frame("{room}", "mal-0000001"),
        {"action": "sendMessages", "messages": [send_frame("{room}", "mal-0000002")]},
        {"action": "getMessages", "with": "{room}"}, {"action": "getRoom", "room": "{room}"},
        {"action": "invite", "room": "{room}", "user": mallory.user}, {"action": "leaveRoom", "room": "{room}"},
        {"action": "removeMember", "room": "{room}", "user": alice.user},
        {"action": "setRoomTitle", "room": "{room}", "title": "mine"}, {"action": "getReads", "with": "{room}"},
        {"action": "markRead", "with": "{room}", "seq": 1}, {"action": "typing", "to": "{room}"},
    ]  # fmt: skip
    for action in actions:
        answers = []
        for target in (room, missing):
            frame = {k: (v.replace("{room}", target) if isinstance(v, str) else v) for k, v in action.items()}
            if "messages" in frame:
                frame["messages"] = [{**m, "to": target} for m in frame["messages"]]
            reply = await mallory.request(frame)
            if reply["type"] == "acks":
                reply = reply["items"][0]
            answers.append({k: reply.get(k) for k in ("type", "code", "message")})
        assert answers[0] == answers[1] and answers[0]["code"] == "forbidden", (action["action"], answers)
    page = await alice.request({"action": "getMessages", "with": room})
    assert [m["body"] for m in page["items"]] == ["members only"], "nothing of mallory's got in"


async def test_an_invited_member_sees_the_whole_history(server, names):
    room, (alice, bob) = await room_of(server, names, 2)
    await alice.request(send_frame(room, "hist-000001", "before you came"))
    await bob.request(send_frame(room, "hist-000002", "also before"))
    carol, _ = await user(server, names, "carol")
    told = await alice.request({"action": "invite", "room": room, "user": carol.user})
    assert told["type"] == "room" and told["members"][-1] == carol.user
    assert (await carol.expect("room", room=room))["members"] == [alice.user, bob.user, carol.user]
    assert (await bob.expect("room", room=room))["members"][-1] == carol.user
    page = await carol.request({"action": "getMessages", "with": room})
    assert [m["body"] for m in page["items"]] == ["before you came", "also before"]
    convs = await carol.request({"action": "getConversations"})
    [conv] = [c for c in convs["items"] if c["with"] == room]
    assert (conv["title"], conv["unread"], conv["readSeq"], "peerReadSeq" in conv) == ("The lab", 2, 0, False)


async def test_the_owner_leaving_hands_the_room_over_and_the_last_leaving_deletes_it(server, names):
    room, (alice, bob, carol) = await room_of(server, names, 3)
    await alice.request(send_frame(room, "own-0000001", "bye"))
    left = await alice.request({"action": "leaveRoom", "room": room})
    assert left == {"type": "left", "room": room, "rid": left["rid"]}
    handed = await bob.expect("room", room=room)
    assert (handed["owner"], handed["members"]) == (bob.user, [bob.user, carol.user])
    await bob.request({"action": "leaveRoom", "room": room})
    await carol.request({"action": "leaveRoom", "room": room})
    again = await alice.request({"action": "createRoom", "room": room})
    assert again["type"] == "room" and again["owner"] == alice.user
    ack = await alice.request(send_frame(room, "own-0000001", "a new room"))
    assert ack["message"]["seq"] == 1 and ack["message"]["body"] == "a new room", "nothing of the old room is left"


async def test_only_the_owner_removes_members_and_the_removed_one_is_told(server, names):
    room, (alice, bob, carol) = await room_of(server, names, 3)
    refused = await bob.request({"action": "removeMember", "room": room, "user": carol.user})
    assert refused["code"] == "forbidden"
    itself = await alice.request({"action": "removeMember", "room": room, "user": alice.user})
    assert itself["code"] == "bad_request"
    told = await alice.request({"action": "removeMember", "room": room, "user": carol.user})
    assert told["type"] == "room" and told["members"] == [alice.user, bob.user]
    assert await carol.expect("left") == {"type": "left", "room": room}
    gone = await carol.request(send_frame(room, "rem-0000001"))
    assert gone["code"] == "forbidden"


async def test_titles_read_marks_and_typing_in_a_room(server, names):
    room, (alice, bob, carol) = await room_of(server, names, 3)
    renamed = await bob.request({"action": "setRoomTitle", "room": room, "title": "Renamed"})
    assert renamed["title"] == "Renamed" and (await carol.expect("room", room=room))["title"] == "Renamed"
    for i in range(3):
        await alice.request(send_frame(room, f"read-{i:07d}", f"m{i}"))
    await bob.send({"action": "markRead", "with": room, "seq": 2})
    for member in (alice, bob, carol):
        assert await member.expect("read") == {"type": "read", "with": room, "by": bob.user, "seq": 2}
    reads = await carol.request({"action": "getReads", "with": room})
    assert reads["items"] == [{"user": alice.user, "seq": 3}, {"user": bob.user, "seq": 2}, {"user": carol.user, "seq": 0}]
    await carol.send({"action": "typing", "to": room})
    for member in (alice, bob):
        assert await member.expect("typing") == {"type": "typing", "from": carol.user, "room": room}
    assert not [f for f in await carol.drain() if f["type"] == "typing"], "the typer hears nothing of it"


@pytest.mark.parametrize("members", [[], ["x" + str(i) for i in range(256)]], ids=["no-members", "too-many"])
async def test_create_room_input_is_checked(server, names, members):
    alice, _ = await user(server, names, "alice")
    reply = await alice.request({"action": "createRoom", "room": "#" + names("r"), "members": members})
    if len(members) > 255:
        assert reply["code"] == "bad_request"
    else:
        assert reply["type"] == "room" and reply["members"] == [alice.user] and reply["title"] == ""
