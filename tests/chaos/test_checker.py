"""The checker itself: it must catch each kind of failure, or the chaos run proves nothing."""

from __future__ import annotations

from tui_chat_dev.chaos.checker import Attempt, Stored, check

A = [Attempt(f"id{n}", "ann", "ann/d1", "bob", f"ann #{n}") for n in range(4)]
KEY = ("ann", "bob")


def stored(*numbers: int, seqs=None) -> list[Stored]:
    seqs = seqs or range(1, len(numbers) + 1)
    return [Stored(s, f"id{n}", "ann", "bob", f"ann #{n}") for s, n in zip(seqs, numbers)]


def run(server, acked=None, holdings=None):
    history = {KEY: server}
    holdings = holdings if holdings is not None else {("ann/d1", "bob"): server, ("bob/d1", "ann"): server}
    return check(A, acked if acked is not None else {a.id for a in A}, history, holdings)


def test_a_clean_history_passes_with_its_counts():
    report = run(stored(0, 1, 2, 3))
    assert report.ok, report.details()
    assert (report.attempted, report.acked, report.delivered, report.holdings_checked) == (4, 4, 4, 2)


def test_an_acked_message_the_server_lacks_is_lost():
    report = run(stored(0, 1, 3))
    assert report.lost == ["id2 was acked but the server does not hold it"]


def test_an_unacked_message_may_be_missing():
    assert run(stored(0, 1, 2), acked={"id0", "id1", "id2"}).ok


def test_a_device_missing_a_message_is_lost_and_diverged():
    server = stored(0, 1, 2, 3)
    report = run(server, holdings={("bob/d1", "ann"): server[:2] + server[3:]})
    assert report.lost == ["bob/d1 never got id2"] and len(report.diverged) == 1


def test_duplicates_by_id_and_by_body_are_caught():
    twice = stored(0, 1, 1, 2, 3)
    assert any("id1 stored 2 times" in d for d in run(twice).duplicated)
    resent_under_new_id = stored(0, 1, 2, 3) + [Stored(5, "other", "ann", "bob", "ann #3")]
    report = check(A + [Attempt("other", "ann", "ann/d1", "bob", "ann #3")], {a.id for a in A}, {KEY: resent_under_new_id}, {})
    assert any("stored 2 times" in d for d in report.duplicated)


def test_a_break_of_the_senders_order_is_caught():
    report = run(stored(0, 2, 1, 3))
    assert report.reordered and "id1" in report.reordered[0]


def test_messages_of_two_devices_may_interleave():
    other = Attempt("x0", "ann", "ann/d2", "bob", "ann/d2 #0")
    server = [Stored(1, "id0", "ann", "bob", "ann #0"), Stored(2, "x0", "ann", "bob", "ann/d2 #0"), *stored(1, 2, 3, seqs=[3, 4, 5])]
    assert check(A + [other], {a.id for a in A} | {"x0"}, {KEY: server}, {}).ok


def test_unexpected_and_altered_messages_are_caught():
    forged = stored(0, 1, 2, 3) + [Stored(5, "nobody-sent-this", "ann", "bob", "hi")]
    assert run(forged).unexpected == ["nobody-sent-this in ('ann', 'bob') was never sent"]
    altered = stored(0, 1, 2) + [Stored(4, "id3", "ann", "bob", "changed")]
    assert "id3 changed" in run(altered).unexpected[0]


def test_a_copy_with_other_seqs_diverges():
    server = stored(0, 1, 2, 3)
    shifted = stored(0, 1, 2, 3, seqs=[2, 3, 4, 5])
    report = run(server, holdings={("bob/d1", "ann"): shifted})
    assert report.diverged and not report.lost


# -- rooms: one history that every member's devices hold ------------------------------------

ROOM = "#lab"
R = [*(Attempt(f"r{n}", "ann", "ann/d1", ROOM, f"ann #{n} to #lab") for n in range(4)), Attempt("b0", "bob", "bob/d1", ROOM, "bob #0 to #lab")]
MEMBER_DEVICES = ("ann/d1", "ann/d2", "bob/d1", "cat/d1")


def in_room(*ids: str) -> list[Stored]:
    by_id = {a.id: a for a in R}
    return [Stored(seq, i, by_id[i].sender, ROOM, by_id[i].body) for seq, i in enumerate(ids, start=1)]


def run_room(server, holdings=None):
    holdings = holdings if holdings is not None else {(device, ROOM): server for device in MEMBER_DEVICES}
    return check(A + R, {a.id for a in A + R}, {KEY: stored(0, 1, 2, 3), ROOM: server}, holdings)


def test_a_clean_room_passes_with_figures_of_its_own():
    report = run_room(in_room("r0", "b0", "r1", "r2", "r3"))
    assert report.ok, report.details()
    room = report.in_rooms
    assert (room.attempted, room.acked, room.delivered, room.holdings_checked) == (5, 5, 5, 4)
    assert "in rooms: attempted 5 / acked 5 / delivered 5 / lost 0" in report.summary()


def test_no_rooms_no_room_figures():
    assert run(stored(0, 1, 2, 3)).in_rooms is None


def test_a_lost_room_message_is_caught_on_the_server_and_on_a_member_device():
    report = run_room(in_room("r0", "b0", "r1", "r3"))
    assert report.lost == report.in_rooms.lost == ["r2 was acked but the server does not hold it"]
    server = in_room("r0", "b0", "r1", "r2", "r3")
    report = run_room(server, holdings={("cat/d1", ROOM): server[:3] + server[4:]})
    assert report.in_rooms.lost == ["cat/d1 never got r2"] and len(report.in_rooms.diverged) == 1


def test_a_duplicated_room_message_is_caught_on_the_server_and_on_a_member_device():
    report = run_room(in_room("r0", "b0", "r1", "r1", "r2", "r3"))
    assert any("r1 stored 2 times" in d for d in report.in_rooms.duplicated) and not report.ok
    server = in_room("r0", "b0", "r1", "r2", "r3")
    report = run_room(server, holdings={("ann/d2", ROOM): server[:3] + server[2:]})
    assert report.in_rooms.duplicated == ["ann/d2 shows r1 twice"]


def test_a_reordered_room_message_is_caught_on_the_server_and_on_a_member_device():
    report = run_room(in_room("r0", "b0", "r2", "r1", "r3"))
    assert report.in_rooms.reordered and "r1" in report.in_rooms.reordered[0]
    server = in_room("r0", "b0", "r1", "r2", "r3")
    swapped = [server[0], server[2], server[1], *server[3:]]
    report = run_room(server, holdings={("bob/d1", ROOM): swapped})
    assert report.in_rooms.diverged == ["bob/d1: same messages as the server, but in another order or with other seqs"]


def test_a_room_message_stored_in_a_direct_conversation_is_caught():
    misplaced = stored(0, 1, 2, 3) + [Stored(5, "r0", "ann", ROOM, "ann #0 to #lab")]
    report = check(A + R, {a.id for a in A + R}, {KEY: misplaced, ROOM: in_room("b0", "r1", "r2", "r3")}, {})
    assert report.unexpected == ["r0 to #lab stored in ('ann', 'bob')"]
    assert report.in_rooms.lost == ["r0 was acked but the server does not hold it"]
