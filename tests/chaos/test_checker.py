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
