"""The in-memory window of a shown conversation follows the service's events alone, in server order."""

from __future__ import annotations

from tui_chat.ui.view_model import MessageRow
from tui_chat.ui.window import ConversationWindow


def row(key: str, *, mine: bool = False, mark: str = "none") -> MessageRow:
    return MessageRow(key, "me" if mine else "bob", key, 0, mine=mine, mark=mark if mine else "none")


def window(*entries: tuple[str, int | None], complete: bool = True) -> ConversationWindow:
    return ConversationWindow([row(k) for k, _ in entries], [s for _, s in entries], complete=complete, more_on_server=False)


def keys(w: ConversationWindow) -> list[str]:
    return [r.key for r in w.rows]


def test_a_new_message_is_appended_and_said_to_be():
    w = window(("a", 1), ("b", 2))
    assert w.put(row("c"), 3) is True
    assert keys(w) == ["a", "b", "c"] and w.seqs == [1, 2, 3]


def test_an_incoming_message_goes_before_our_queued_ones():
    w = window(("a", 1))
    assert w.put(row("mine", mine=True, mark="pending"), None) is True
    assert w.put(row("b"), 2) is False, "not at the end: the view must compare"
    assert keys(w) == ["a", "b", "mine"]


def test_an_ack_turns_the_queued_row_into_a_sent_one_where_its_seq_puts_it():
    """Our message was stored as seq 2, but seq 3 from the other side reached us before the ack."""
    w = window(("a", 1))
    w.put(row("mine", mine=True, mark="pending"), None)
    w.put(row("theirs"), 3)
    w.put(row("mine", mine=True, mark="sent"), 2)
    assert keys(w) == ["a", "mine", "theirs"] and w.seqs == [1, 2, 3]
    assert w.rows[1].mark == "sent"


def test_a_failed_row_stays_where_it_was_and_a_retried_one_goes_last():
    w = window(("a", 1))
    for key in ("x", "y"):
        w.put(row(key, mine=True, mark="pending"), None)
    w.put(row("x", mine=True, mark="failed"), None)
    assert keys(w) == ["a", "x", "y"] and w.rows[1].mark == "failed"
    w.remove("x")
    w.put(row("x", mine=True, mark="pending"), None)
    assert keys(w) == ["a", "y", "x"]


def test_a_message_older_than_a_partial_window_is_left_to_the_cache():
    w = window(("a", 10), ("b", 11), complete=False)
    w.put(row("old"), 5)
    assert keys(w) == ["a", "b"], "it would leave a hole above it; it is read when scrolled to"
    complete = window(("a", 10), ("b", 11))
    complete.put(row("old"), 5)
    assert keys(complete) == ["old", "a", "b"]


def test_an_older_page_goes_on_top_without_duplicates():
    w = window(("c", 3), ("d", 4))
    w.prepend([row("a"), row("b"), row("c")], [1, 2, 3])
    assert keys(w) == ["a", "b", "c", "d"] and w.seqs == [1, 2, 3, 4]


def test_a_read_receipt_marks_our_sent_rows_up_to_it():
    w = ConversationWindow(
        [row("m1", mine=True, mark="read"), row("m2", mine=True, mark="sent"), row("t", mine=False),
         row("m3", mine=True, mark="sent"), row("q", mine=True, mark="pending")],
        [1, 2, 3, 4, None], complete=True, more_on_server=False,
    )  # fmt: skip
    w.read_up_to(3)
    assert [r.mark for r in w.rows] == ["read", "read", "none", "sent", "pending"]
