"""Search over the cached history (SQLite FTS5): what a person typing into the search box gets.

Words match as prefixes, regardless of case and diacritics; query text is never FTS5 syntax;
messages that leave the cache leave the index; a cache written before search existed is indexed
when it is opened; and older history still on the server can be brought in to be searched."""

from __future__ import annotations

import sqlite3

from tests.client.conftest import PASSWORD, make_client, wait_until
from tui_chat.client.cache import Cache
from tui_chat.client.localdb import _SCHEMA, open_db
from tui_chat.client.search import SearchIndex, query_words
from tui_chat.migrations import migrate
from tui_chat.protocol import Attachment, Message
from tui_chat_dev.wsclient import WsClient, signup

BEFORE_SEARCH = 5
"""The cache's schema version in the release before search (its migrations up to attachments)."""


def message(seq: int, body: str, peer: str = "bob", *, me: str = "ann", file: str | None = None) -> Message:
    attachment = Attachment(file_id=f"f{seq:030d}", name=file, size=1, type="application/pdf") if file else None
    return Message(seq=seq, id=f"m-{peer}-{seq}", sender=peer if not peer.startswith("#") else "carl", to=me if not peer.startswith("#") else peer,
                   body=body, ts=1_700_000_000_000 + seq, attachment=attachment)  # fmt: skip


def found(index: SearchIndex, text: str) -> list[str]:
    return [hit.body or hit.file_name for hit in index.search(text)]


def test_words_match_as_prefixes_ignoring_case_and_diacritics(tmp_path):
    db = open_db(tmp_path / "cache.db")
    Cache(db, "ann").add([
        message(1, "Café on Friday?"),
        message(2, "The ZÜRICH plans are ready"),
        message(3, "", file="Floor-Plan.pdf"),
        message(4, "nothing to see"),
    ])  # fmt: skip
    index = SearchIndex(db)
    assert found(index, "cafe") == ["Café on Friday?"]
    assert found(index, "zurich PLAN") == ["The ZÜRICH plans are ready"], "every word, each a prefix"
    assert found(index, "plan") == ["Floor-Plan.pdf", "The ZÜRICH plans are ready"], "file names too, newest first"
    assert found(index, "fri caf") == ["Café on Friday?"], "in any order"
    assert found(index, "plans friday") == [], "all words must be in one message"
    hit = index.search("zur pla")[0]
    assert [hit.body[a:b] for a, b in hit.body_spans] == ["ZÜR", "pla"], "the matched part of each word, as written"


def test_query_text_is_never_search_syntax(tmp_path):
    db = open_db(tmp_path / "cache.db")
    Cache(db, "ann").add([message(1, 'say "NOT" or * near: (this) AND that'), message(2, "other")])
    index = SearchIndex(db)
    for hostile in ['"', "NOT", "*", "near:", "(this", "AND", "body:x", "^that", "-", "'; DROP TABLE messages; --"]:
        index.search(hostile)  # no sqlite3.OperationalError for any of them
    assert found(index, "NOT") == ['say "NOT" or * near: (this) AND that'], "an operator word is just a word"
    assert found(index, "!!!") == [] and found(index, "   ") == []
    assert len(query_words("a b c d e f g h i j k")) == 8, "a bounded number of words"


def test_a_message_leaving_the_cache_leaves_the_index(tmp_path):
    db = open_db(tmp_path / "cache.db")
    cache = Cache(db, "ann")
    cache.add([message(1, "secret plans", peer="#club"), message(2, "plans for bob")])
    cache.forget(("#club"))
    assert found(SearchIndex(db), "plans") == ["plans for bob"]
    assert db.execute("SELECT count(*) FROM search_rows").fetchone()[0] == 1


def test_a_cache_from_the_release_before_search_is_indexed_when_opened(tmp_path):
    path = tmp_path / "cache.db"
    old = sqlite3.connect(path, isolation_level=None)
    migrate(old, _SCHEMA[:BEFORE_SEARCH])
    Cache(old, "ann").add([message(seq, f"old message {seq}") for seq in range(1, 301)] + [message(301, "", file="résumé.pdf")])
    old.close()

    db = open_db(path)
    index = SearchIndex(db)
    assert found(index, "message 299") == ["old message 299"] and found(index, "resume") == ["résumé.pdf"]
    assert len(found(index, "message 7")) == 11, "7 and 70-79: prefixes"
    assert len(index.search("old", limit=500)) == 300
    Cache(db, "ann").add([message(302, "a new old message")])
    assert found(index, "new old") == ["a new old message"], "and kept up to date from then on"


def test_a_conversation_cached_from_its_first_message_on_needs_nothing_from_the_server(tmp_path):
    """Messages that came live from seq 1 on are the whole history: search offers no fetch."""
    cache = Cache(open_db(tmp_path / "cache.db"), "ann")
    cache.add([message(seq, f"live {seq}") for seq in range(1, 6)] + [message(40, "late", peer="#club")])
    assert cache.incomplete() == ["#club"]


async def test_older_history_on_the_server_is_fetched_then_found(chat_server, tmp_path):
    """A new device holds a conversation's newest page; the rest comes when asked, then is found."""
    ann_name, bob_name = "searchann", "searchbob"
    ann = await make_client(chat_server.http_url, tmp_path, ann_name)
    bob = await WsClient.open(chat_server.ws_url, await signup(chat_server.http_url, bob_name, PASSWORD), bob_name)
    try:
        bodies = [f"note {i}" + (" about the lighthouse" if i == 7 else "") for i in range(450)]
        for start in range(0, len(bodies), 50):
            batch = [{"id": f"old-{i:04d}", "to": ann_name, "body": bodies[i]} for i in range(start, start + 50)]
            assert (await bob.request({"action": "sendMessages", "messages": batch}))["type"] == "acks"
        ann.start()
        await wait_until(ann, lambda: ann.online and ann.timeline_length(bob_name) >= 200)
        assert ann.search("lighthouse") == [], "message 7 is older than the newest page"
        assert ann.not_fully_cached() == [bob_name]

        pages: list[tuple[str, int]] = []
        fetched = await ann.fetch_older_history(lambda peer, count: pages.append((peer, count)))
        assert fetched == 250 and pages[-1] == (bob_name, 250)
        assert [hit.body for hit in ann.search("lighthouse")] == ["note 7 about the lighthouse"]
        assert ann.not_fully_cached() == [] and await ann.fetch_older_history() == 0
    finally:
        await ann.stop()
        await bob.close()
