"""Whatever arrives, parsing answers with a typed action/event or a ProtocolError, never a crash."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tui_chat import protocol as p

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
field_names = st.sampled_from(["action", "id", "to", "with", "body", "before", "after", "limit", "cursor", "status", "text", "seq", "rid"])
frames = st.dictionaries(field_names, json_values | st.sampled_from(p.ACTIONS), max_size=8)


@settings(max_examples=400, deadline=None)
@given(frames)
def test_any_object_parses_or_is_refused_precisely(frame):
    try:
        action = p.action_from_object(frame)
    except p.ProtocolError as exc:
        assert exc.code in p.ERROR_CODES and exc.message
        p.encode(p.event_to_wire(exc.to_event()))  # the refusal itself can always be sent
    else:
        assert action.action in p.ACTIONS
        p.encode(p.action_to_wire(action))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_are_bad_requests(raw):
    for parse in (p.parse_action, p.parse_event):
        try:
            parse(raw)
        except p.ProtocolError as exc:
            assert exc.code in (p.BAD_REQUEST, p.TOO_LARGE, p.UNKNOWN_ACTION)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "message", "items", "users", "with", "by", "seq", "from", "code"]), json_values, max_size=6))
def test_garbage_server_frames_never_crash_the_client_parser(frame):
    try:
        p.parse_event(json.dumps(frame))
    except p.ProtocolError:
        pass
