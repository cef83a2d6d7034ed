"""The wire format: every action parses to its typed form, and every broken frame gets a precise error."""

import json

import pytest

from tui_chat import protocol as p


def parse(frame):
    return p.parse_action(json.dumps(frame) if isinstance(frame, dict) else frame)


def error_of(frame) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        parse(frame)
    return info.value


VALID = [
    ({"action": "sendMessage", "id": "01HZXYABCD", "to": "Bob", "body": "hi"}, p.SendMessage(id="01HZXYABCD", to="bob", body="hi")),
    ({"action": "getMessages", "with": "bob"}, p.GetMessages(with_="bob")),
    ({"action": "getMessages", "with": "bob", "before": 10, "limit": 200}, p.GetMessages(with_="bob", before=10, limit=200)),
    ({"action": "getMessages", "with": "bob", "after": 0, "rid": "r1"}, p.GetMessages(with_="bob", after=0, rid="r1")),
    ({"action": "getConversations"}, p.GetConversations()),
    ({"action": "getConversations", "cursor": "abc"}, p.GetConversations(cursor="abc")),
    ({"action": "getClients", "cursor": "bob"}, p.GetClients(cursor="bob")),
    ({"action": "setStatus", "status": "away", "text": "lunch"}, p.SetStatus(status="away", text="lunch")),
    ({"action": "setStatus", "status": "busy"}, p.SetStatus(status="busy", text="")),
    ({"action": "markRead", "with": "bob", "seq": 7}, p.MarkRead(with_="bob", seq=7)),
    ({"action": "typing", "to": "bob"}, p.Typing(to="bob")),
    ({"action": "ping", "rid": "x", "extra": [1, 2]}, p.Ping(rid="x")),
    # Rooms (section 7.2): room addresses are lowercased like usernames.
    ({"action": "sendMessage", "id": "abcdefgh", "to": "#General", "body": "hi"}, p.SendMessage(id="abcdefgh", to="#general", body="hi")),
    ({"action": "getMessages", "with": "#lab"}, p.GetMessages(with_="#lab")),
    ({"action": "markRead", "with": "#lab", "seq": 3}, p.MarkRead(with_="#lab", seq=3)),
    ({"action": "typing", "to": "#lab"}, p.Typing(to="#lab")),
    ({"action": "createRoom", "room": "#Lab", "title": "The lab", "members": ["Bob", "carol"]},
     p.CreateRoom(room="#lab", title="The lab", members=("bob", "carol"))),
    ({"action": "createRoom", "room": "#lab"}, p.CreateRoom(room="#lab")),
    ({"action": "getRoom", "room": "#lab", "rid": "r1"}, p.GetRoom(room="#lab", rid="r1")),
    ({"action": "invite", "room": "#lab", "user": "Dave"}, p.Invite(room="#lab", user="dave")),
    ({"action": "leaveRoom", "room": "#lab"}, p.LeaveRoom(room="#lab")),
    ({"action": "removeMember", "room": "#lab", "user": "bob"}, p.RemoveMember(room="#lab", user="bob")),
    ({"action": "setRoomTitle", "room": "#lab", "title": ""}, p.SetRoomTitle(room="#lab", title="")),
    ({"action": "getReads", "with": "#lab"}, p.GetReads(with_="#lab")),
]


@pytest.mark.parametrize("frame,expected", VALID, ids=[f[0]["action"] + str(i) for i, f in enumerate(VALID)])
def test_every_action_parses_to_its_typed_form(frame, expected):
    assert parse(frame) == expected


@pytest.mark.parametrize("frame,expected", VALID[:1] + VALID[2:4] + VALID[7:8] + VALID[-11:])
def test_actions_round_trip_through_the_wire_form(frame, expected):
    assert p.parse_action(p.encode(p.action_to_wire(expected))) == expected


BAD = [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('"text"', "JSON object"),
    ({"nothing": 1}, "'action' is required"),
    ({"action": 5}, "'action' must be a string"),
    ({"action": "sendMessage", "id": "short", "to": "bob", "body": "x"}, "'id'"),
    ({"action": "sendMessage", "id": "abcdefgh", "body": "x"}, "'to' is required"),
    ({"action": "sendMessage", "id": "abcdefgh", "to": "#", "body": "x"}, "'to': a room is"),
    ({"action": "sendMessage", "id": "abcdefgh", "to": "#a b", "body": "x"}, "'to': a room is"),
    ({"action": "createRoom", "room": "lab"}, "'room': a room is"),
    ({"action": "createRoom", "room": "#lab", "title": "t" * 81}, "'title'"),
    ({"action": "createRoom", "room": "#lab", "title": "a\x1b[2Jb"}, "'title'"),
    ({"action": "createRoom", "room": "#lab", "members": "bob"}, "'members'"),
    ({"action": "createRoom", "room": "#lab", "members": [f"u{i:03d}" for i in range(256)]}, "255"),
    ({"action": "createRoom", "room": "#lab", "members": ["#other"]}, "'members'"),
    ({"action": "invite", "room": "#lab", "user": "#lab"}, "not a room"),
    ({"action": "invite", "room": "#lab"}, "'user' is required"),
    ({"action": "setRoomTitle", "room": "#lab"}, "'title'"),
    ({"action": "getReads", "with": "bob"}, "'with': a room is"),
    ({"action": "sendMessage", "id": "abcdefgh", "to": "bob", "body": "   "}, "empty"),
    ({"action": "sendMessage", "id": "abcdefgh", "to": "bob", "body": "a\x1b[31mb"}, "U+001B"),
    ({"action": "sendMessage", "id": "abcdefgh", "to": "bob", "body": "a\x85b"}, "U+0085"),
    ({"action": "sendMessage", "id": "abcdefgh", "to": "bob", "body": "x" * 4001}, "4000"),
    ({"action": "sendMessage", "id": "abcdefgh", "to": "bob", "body": 5}, "string"),
    ({"action": "getMessages", "with": "bob", "before": 5, "after": 2}, "together"),
    ({"action": "getMessages", "with": "bob", "limit": 0}, "'limit'"),
    ({"action": "getMessages", "with": "bob", "limit": 201}, "'limit'"),
    ({"action": "getMessages", "with": "bob", "limit": True}, "'limit'"),
    ({"action": "getMessages", "with": "bob", "after": -1}, "'after'"),
    ({"action": "getMessages", "with": "bob", "after": 2**60}, "'after'"),
    ({"action": "getMessages", "with": "bob", "before": 1.5}, "'before'"),
    ({"action": "setStatus", "status": "offline"}, "'status'"),
    ({"action": "setStatus", "status": "away", "text": "x" * 81}, "80"),
    ({"action": "setStatus", "status": "away", "text": "\x07"}, "control"),
    ({"action": "markRead", "with": "bob"}, "'seq' is required"),
    ({"action": "typing", "to": "a"}, "'to'"),
    ({"action": "ping", "rid": "r" * 65}, "'rid'"),
    ({"action": "ping", "rid": 5}, "'rid'"),
]


@pytest.mark.parametrize("frame,fragment", BAD)
def test_broken_frames_get_bad_request_naming_the_problem(frame, fragment):
    error = error_of(frame)
    assert error.code == p.BAD_REQUEST
    assert fragment in error.message


def test_unknown_action_is_its_own_code_and_keeps_the_rid():
    error = error_of({"action": "launchRockets", "rid": "r9"})
    assert (error.code, error.rid) == (p.UNKNOWN_ACTION, "r9")


def test_send_errors_name_the_message_and_request():
    error = error_of({"action": "sendMessage", "id": "abcdefgh", "to": "bob", "body": "", "rid": "r1"})
    assert (error.id, error.rid) == ("abcdefgh", "r1")
    assert p.event_to_wire(error.to_event()) == {
        "type": "error", "code": "bad_request", "message": "body must not be empty", "id": "abcdefgh", "rid": "r1"
    }


def test_frames_over_32_kib_are_too_large_before_parsing():
    frame = json.dumps({"action": "ping", "pad": "x" * p.MAX_ACTION_BYTES})
    error = error_of(frame)
    assert error.code == p.TOO_LARGE and error.rid is None


def test_sizes_count_utf8_bytes_not_characters():
    assert p.body_problem("é" * 4000) is None  # 4,000 characters, 8,000 bytes: within both limits
    assert "4000" in p.body_problem("é" * 4001)
    assert p.frame_size("é") == 2
    assert p.frame_size(b"ab") == 2


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe", "[" * 20000, '{"action": NaN}', '{"a": 1e999999}', "1" * 5000, '"\\ud800"', "{}" + "x"],
)
def test_hostile_encodings_are_bad_requests_not_crashes(raw):
    assert error_of(raw).code == p.BAD_REQUEST


def test_lone_surrogates_in_a_body_are_refused():
    error = error_of('{"action":"sendMessage","id":"abcdefgh","to":"bob","body":"a\\ud800b"}')
    assert "surrogate" in error.message


def test_body_allows_newlines_tabs_and_any_printable_script():
    assert p.body_problem("line one\nline two\tend\r\n") is None
    assert p.body_problem("مرحبا 你好 🎉") is None


@pytest.mark.parametrize("name,ok", [("alice", "alice"), ("ALICE", "alice"), ("a.b-c_d", "a.b-c_d"), ("0day", "0day")])
def test_usernames_are_lowercased(name, ok):
    assert p.normalize_username(name) == ok


@pytest.mark.parametrize("name", ["a", "_alice", ".x", "x" * 33, "al ice", "alicé", "аlice", "", None, 7, "al\u202eice"])
def test_invalid_usernames_are_refused(name):
    assert not p.is_valid_username(name)


def test_encode_is_compact_raw_utf8():
    assert p.encode({"body": "é"}) == '{"body":"é"}'


def test_a_room_summary_carries_its_title_and_no_peer_read_mark():
    room = p.ConversationSummary(with_="#lab", last_seq=3, read_seq=1, unread=2, last=None, title="")
    assert p.event_to_wire(p.Conversations(items=(room,)))["items"][0] == {
        "with": "#lab", "lastSeq": 3, "readSeq": 1, "unread": 2, "last": None, "title": "",
    }  # fmt: skip


def test_events_round_trip_through_the_client_parser():
    msg = p.Message(id="abcdefgh", sender="alice", to="bob", body="hi", seq=1, ts=1700000000000)
    events = [
        p.Ack(id="abcdefgh", message=msg, rid="r"),
        p.MessageEvent(message=msg),
        p.Messages(with_="bob", items=(msg,), has_more=True, rid="r"),
        p.Conversations(items=(p.ConversationSummary(with_="bob", last_seq=1, read_seq=0, unread=1, last=msg),), next="c"),
        p.Clients(users=(p.ClientInfo(user="bob", status="offline", text="", last_seen=5),)),
        p.PresenceEvent(user="bob", status="away", text="lunch", last_seen=None),
        p.Presences(items=(p.PresenceEvent("bob", "away", "", None), p.PresenceEvent("cid", "offline", "", 7))),
        p.Read(with_="bob", by="bob", seq=1),
        p.TypingEvent(sender="bob"),
        p.Pong(rid="r"),
        p.Error(code="rate_limited", message="slow down", retry_after_ms=20),
        p.Replaced(),
        p.Conversations(items=(p.ConversationSummary(with_="#lab", last_seq=3, read_seq=1, unread=2, last=None, title="The lab"),)),
        p.RoomEvent(room="#lab", title="", owner="alice", members=("alice", "bob"), rid="r"),
        p.Left(room="#lab"),
        p.Reads(with_="#lab", items=(("alice", 3), ("bob", 0)), rid="r"),
        p.TypingEvent(sender="bob", room="#lab"),
    ]
    for event in events:
        assert p.parse_event(p.encode(p.event_to_wire(event))) == event


def test_garbage_from_a_server_is_a_protocol_error():
    for raw in ['{"type":"ack"}', '{"type":"message","message":{"id":1}}', '{"type":"what"}', "[]",
                '{"type":"presences","items":[1]}', '{"type":"presences","items":{}}', '{"type":"presences"}',
                '{"type":"room","room":"#lab","owner":"a","members":[1]}', '{"type":"reads","with":"#lab","items":[{"user":"a"}]}']:
        with pytest.raises(p.ProtocolError):
            p.parse_event(raw)
