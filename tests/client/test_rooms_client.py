"""Rooms in the client service (PROTOCOL.md 7.2), against the real server, as a person notices them:

- room traffic lands in the room's conversation, never in the sender's; typing says who, where;
- every room action from the client changes the state on every member's device;
- a message queued offline to a room is delivered once, in order;
- membership changes made while a device was away are found on reconnecting;
- a room joined live brings its history; members' read marks turn own messages read.

Raw clients (``WsClient``) play the other members, so each test sees exactly what a second
person does. Every wait is on an event or a state, bounded.
"""

from __future__ import annotations

import pytest

from tests.client.conftest import fast_link, make_client, wait_until
from tests.client.test_sync_and_pacing import server_history
from tui_chat.client.service import ChatClient, RoomActionFailed
from tui_chat.client.state import Room, RoomLeft
from tui_chat_dev.wsclient import WsClient, signup


def recorded(client) -> list:
    """Every event the client emits from now on (waiting on the client consumes its queue)."""
    seen: list = []
    put = client._events.put_nowait

    def put_and_record(event) -> None:
        seen.append(event)
        put(event)

    client._events.put_nowait = put_and_record
    return seen


async def other_member(server, name: str) -> WsClient:
    token = await signup(server.http_url, name)
    return await WsClient.open(server.ws_url, token, name)


async def test_room_traffic_lands_in_the_room_with_each_senders_name_and_typing_says_who(chat_server, tmp_path):
    alice = await make_client(chat_server.http_url, tmp_path, "rtalice")
    bob = await other_member(chat_server, "rtbob")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        await bob.request({"action": "createRoom", "room": "#rtroom", "title": "The room", "members": ["rtalice"]})
        await wait_until(alice, lambda: alice.room("#rtroom") is not None)
        assert alice.room("#rtroom") == Room("#rtroom", "The room", "rtbob", ("rtbob", "rtalice"))
        await bob.request({"action": "sendMessage", "id": "rt-0000001", "to": "#rtroom", "body": "in the room"})
        await bob.send({"action": "typing", "to": "#rtroom"})
        await bob.request({"action": "sendMessage", "id": "rt-0000002", "to": "rtalice", "body": "just to you"})
        await wait_until(alice, lambda: alice.timeline_length("rtbob") == 1 and alice.typing_in("#rtroom"))
        assert [(r.sender, r.body) for r in alice.timeline("#rtroom")] == [("rtbob", "in the room")]
        assert [r.body for r in alice.timeline("rtbob")] == ["just to you"]
        assert alice.typing_in("#rtroom") == ["rtbob"] and alice.typing_in("rtbob") == []
        assert alice.conversation("#rtroom").unread == 1

        alice.send("#rtroom", "hello room")
        await wait_until(alice, lambda: alice.queued == 0)
        said = await bob.expect("message")
        assert (said["message"]["from"], said["message"]["to"], said["message"]["body"]) == ("rtalice", "#rtroom", "hello room")
        await alice.stop()  # offline: the room's news waits on the server
        await bob.request({"action": "sendMessage", "id": "rt-0000003", "to": "#rtroom", "body": "while you were out"})
        alice.start()
        await wait_until(alice, lambda: alice.timeline_length("#rtroom") == 3)
        assert [r.body for r in alice.timeline("#rtroom")] == ["in the room", "hello room", "while you were out"]
        assert alice.conversation("#rtroom").unread == 1, "what alice sent read everything before it"
    finally:
        await alice.close()
        await bob.close()


async def test_every_room_action_from_the_client_reaches_the_other_members(chat_server, tmp_path):
    alice = await make_client(chat_server.http_url, tmp_path, "raalice")
    bob = await other_member(chat_server, "rabob")
    await signup(chat_server.http_url, "racarol")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        room = await alice.create_room("RALab", "Lab", ["rabob"])
        assert room == Room("#ralab", "Lab", "raalice", ("raalice", "rabob"))
        assert (await bob.expect("room"))["members"] == ["raalice", "rabob"]

        with pytest.raises(RoomActionFailed, match="taken"):
            await alice.create_room("#ralab")
        with pytest.raises(RoomActionFailed, match="no user named .ranobody."):
            await alice.invite("#ralab", "ranobody")

        await alice.invite("#ralab", "racarol")
        assert (await bob.expect("room"))["members"] == ["raalice", "rabob", "racarol"]
        assert alice.room("#ralab").members == ("raalice", "rabob", "racarol")
        await alice.set_room_title("#ralab", "The lab")
        assert (await bob.expect("room"))["title"] == "The lab"
        assert alice.room("#ralab").title == "The lab"
        await alice.remove_member("#ralab", "racarol")
        assert (await bob.expect("room"))["members"] == ["raalice", "rabob"]

        await bob.send({"action": "createRoom", "room": "#rabobs", "members": ["raalice"]})
        await wait_until(alice, lambda: alice.room("#rabobs") is not None)
        with pytest.raises(RoomActionFailed, match="not a member|owner|forbidden"):
            await alice.remove_member("#rabobs", "rabob")

        events = recorded(alice)
        await alice.leave_room("#ralab")
        assert alice.room("#ralab") is None and "#ralab" not in [c.peer for c in alice.conversations()]
        assert RoomLeft("#ralab", by_me=True) in events
        assert (await bob.expect("room"))["owner"] == "rabob", "the room went to the longest-standing member"
    finally:
        await alice.close()
        await bob.close()


async def test_room_actions_offline_are_refused_with_a_reason_and_nothing_is_half_done(chat_server, tmp_path):
    alice = await make_client(chat_server.http_url, tmp_path, "roalice")
    with pytest.raises(RoomActionFailed, match="not connected"):
        await alice.create_room("#roroom")
    with pytest.raises(RoomActionFailed, match="'#'|characters"):
        await alice.create_room("#no spaces")
    with pytest.raises(RoomActionFailed, match="control"):
        await alice.create_room("#roroom", "bell\x07")
    assert alice.rooms() == []
    await alice.close()


async def test_messages_queued_offline_to_a_room_are_delivered_once_in_order(chat_server, tmp_path):
    alice = await make_client(chat_server.http_url, tmp_path, "rqalice")
    bob = await other_member(chat_server, "rqbob")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        await alice.create_room("#rqroom", members=["rqbob"])
        await alice.stop()
        ids = [alice.send("#rqroom", f"queued {n}") for n in range(30)]
        assert alice.queued == 30
        alice.start()
        await wait_until(alice, lambda: alice.queued == 0, timeout=15)
        history = await server_history(chat_server, alice.tokens.access, "rqalice", "#rqroom")
        assert [m["id"] for m in history] == ids, "stored once each, in the order written"
        assert [r.state for r in alice.timeline("#rqroom")] == ["sent"] * 30
    finally:
        await alice.close()
        await bob.close()


async def test_membership_changes_made_while_away_are_found_on_reconnecting(chat_server, tmp_path):
    alice = await make_client(chat_server.http_url, tmp_path, "rmalice")
    bob = await other_member(chat_server, "rmbob")
    await signup(chat_server.http_url, "rmcarol")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        await bob.request({"action": "createRoom", "room": "#rmstays", "members": ["rmalice"]})
        await bob.request({"action": "createRoom", "room": "#rmgoes", "members": ["rmalice"]})
        await bob.request({"action": "sendMessage", "id": "rm-0000001", "to": "#rmgoes", "body": "soon gone"})
        await wait_until(alice, lambda: alice.timeline_length("#rmgoes") == 1 and alice.room("#rmstays") is not None)
        await alice.stop()
        alice.send("#rmgoes", "written while removed")
        await bob.request({"action": "invite", "room": "#rmstays", "user": "rmcarol"})
        await bob.request({"action": "setRoomTitle", "room": "#rmstays", "title": "Still here"})
        await bob.request({"action": "removeMember", "room": "#rmgoes", "user": "rmalice"})
        await bob.request({"action": "createRoom", "room": "#rmnew", "members": ["rmalice"]})
        events = recorded(alice)
        alice.start()
        await wait_until(alice, lambda: alice.room("#rmgoes") is None and alice.room("#rmnew") is not None
                         and alice.room("#rmstays").title == "Still here")  # fmt: skip
        assert alice.room("#rmstays").members == ("rmbob", "rmalice", "rmcarol")
        assert alice.timeline_length("#rmgoes") == 0, "a room left takes its history along"
        assert alice.queued == 0
        assert RoomLeft("#rmgoes") in events
        assert any("1 unsent message to #rmgoes" in getattr(e, "text", "") for e in events)
    finally:
        await alice.close()
        await bob.close()


async def test_a_room_joined_live_brings_its_history_and_read_marks_turn_own_messages_read(chat_server, tmp_path):
    alice = await make_client(chat_server.http_url, tmp_path, "rlalice")
    bob = await other_member(chat_server, "rlbob")
    carol = await other_member(chat_server, "rlcarol")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        await bob.request({"action": "createRoom", "room": "#rlroom", "members": ["rlcarol"]})
        for n in range(3):
            await bob.request({"action": "sendMessage", "id": f"rl-000000{n}", "to": "#rlroom", "body": f"before {n}"})
        await bob.request({"action": "invite", "room": "#rlroom", "user": "rlalice"})
        await wait_until(alice, lambda: alice.timeline_length("#rlroom") == 3)
        assert alice.conversation("#rlroom").unread == 3, "a new member has read nothing yet"

        await alice.open_conversation("#rlroom")
        assert alice.reads("#rlroom") == {"rlbob": 3, "rlcarol": 0, "rlalice": 0}
        await alice.mark_read("#rlroom")
        sent = alice.send("#rlroom", "read me")
        await wait_until(alice, lambda: alice.queued == 0)
        [mine] = [r for r in alice.timeline("#rlroom") if r.id == sent]
        await bob.send({"action": "markRead", "with": "#rlroom", "seq": mine.seq})
        await wait_until(alice, lambda: alice.reads("#rlroom")["rlbob"] == mine.seq)
        assert alice.timeline("#rlroom")[-1].state == "sent", "carol has not read it yet"
        await carol.send({"action": "markRead", "with": "#rlroom", "seq": mine.seq})
        await wait_until(alice, lambda: alice.timeline("#rlroom")[-1].state == "read")
    finally:
        await alice.close()
        await bob.close()
        await carol.close()


async def test_rooms_show_from_disk_before_connecting_and_a_room_opened_offline_gets_its_read_marks(chat_server, tmp_path):
    """The app starts from the cache: rooms are listed before the link is up; a room opened
    then has its members' read marks fetched once it is (found by hand: they never came)."""
    alice = await make_client(chat_server.http_url, tmp_path, "rdalice")
    bob = await other_member(chat_server, "rdbob")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        await alice.create_room("#rdroom", "Kept", ["rdbob"])
        alice.send("#rdroom", "read this")
        await wait_until(alice, lambda: alice.queued == 0)
        [said] = alice.timeline("#rdroom")
        await bob.send({"action": "markRead", "with": "#rdroom", "seq": said.seq})
        await alice.close()

        again = ChatClient(chat_server.http_url, data_folder=tmp_path / "rdalice" / "main", device="rdalice-device-1", connection_options=fast_link())
        assert again.open_saved("rdalice")
        assert [(r.name, r.title) for r in again.rooms()] == [("#rdroom", "Kept")], "listed before connecting"
        await again.open_conversation("#rdroom")  # offline: nothing to fetch yet
        assert again.reads("#rdroom") == {}
        again.start()
        await wait_until(again, lambda: (again.reads("#rdroom") or {}).get("rdbob") == said.seq)
        await wait_until(again, lambda: again.timeline("#rdroom")[-1].state == "read")
        await again.close()
    finally:
        await bob.close()
