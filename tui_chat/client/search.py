"""Full-text search over the cached history: SQLite FTS5, folded for case and diacritics,
every word a prefix ("cafe pla" finds "Café plans").

The index is contentless: the words are indexed, the text stays only in ``messages`` (it is
not stored twice). FTS5 needs an integer key per row, which ``messages`` (keyed by peer and
seq) has not: ``search_rows`` gives one. Triggers keep both in step with ``messages``, so every
way a message enters or leaves the cache (live, catch-up, an older page, a room forgotten)
updates the index in the same transaction.

Highlights are found here, on the original text, with the same folding: the index says which
messages match, this module says where, and the UI draws those spans (the text itself stays inert).
"""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from dataclasses import dataclass

SEARCH_SCHEMA = (
    "CREATE TABLE search_rows (id INTEGER PRIMARY KEY, peer TEXT NOT NULL, seq INTEGER NOT NULL, UNIQUE (peer, seq))",
    "CREATE VIRTUAL TABLE message_search USING fts5("
    " body, file, content='', tokenize='unicode61 remove_diacritics 2', prefix='2 3')",
    """CREATE TRIGGER messages_searchable AFTER INSERT ON messages BEGIN
        INSERT INTO search_rows (peer, seq) VALUES (new.peer, new.seq);
        INSERT INTO message_search (rowid, body, file)
            VALUES (last_insert_rowid(), new.body, coalesce(json_extract(new.attachment, '$.name'), ''));
    END""",
    # A contentless index forgets a row when told its words again ('delete').
    """CREATE TRIGGER messages_unsearchable AFTER DELETE ON messages BEGIN
        INSERT INTO message_search (message_search, rowid, body, file)
            SELECT 'delete', id, old.body, coalesce(json_extract(old.attachment, '$.name'), '')
            FROM search_rows WHERE peer = old.peer AND seq = old.seq;
        DELETE FROM search_rows WHERE peer = old.peer AND seq = old.seq;
    END""",
    "INSERT INTO search_rows (peer, seq) SELECT peer, seq FROM messages ORDER BY ts, peer, seq",
    """INSERT INTO message_search (rowid, body, file)
        SELECT r.id, m.body, coalesce(json_extract(m.attachment, '$.name'), '')
        FROM search_rows r JOIN messages m ON m.peer = r.peer AND m.seq = r.seq""",
)

MAX_RESULTS = 50
MAX_QUERY_WORDS = 8
"""Words of a query used (each one a prefix to look up): enough for any phrase one remembers."""
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class SearchHit:
    peer: str
    """The conversation: a user name or a ``#room``."""
    seq: int
    id: str
    sender: str
    ts: int
    body: str
    file_name: str
    body_spans: tuple[tuple[int, int], ...]
    """Where the query's words are in ``body`` (start, end), for highlighting."""
    file_spans: tuple[tuple[int, int], ...]


def fold(text: str) -> str:
    """Lower case without diacritics, the way the index compares words."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def query_words(text: str) -> list[str]:
    """The words a query looks for, folded, at most :data:`MAX_QUERY_WORDS`."""
    return [fold(w) for w in _WORD.findall(text)][:MAX_QUERY_WORDS]


def match_expression(words: list[str]) -> str:
    """An FTS5 query: every word, as a prefix. Words are quoted, so nothing in a query is
    FTS5 syntax (``NOT``, ``"``, ``*``, ``:`` are only text)."""
    return " ".join(f'"{w}"*' for w in words)


def spans(text: str, words: list[str]) -> tuple[tuple[int, int], ...]:
    """Where words of ``text`` start with one of ``words`` (folded alike), merged and in order."""
    if not words or not text:
        return ()
    found: list[tuple[int, int]] = []
    for match in _WORD.finditer(text):
        folded = fold(match.group())
        for w in words:
            if folded.startswith(w):
                # highlight the matched prefix: as many characters of the original as fold to it
                end = match.start()
                while end < match.end() and len(fold(text[match.start() : end])) < len(w):
                    end += 1
                found.append((match.start(), end))
                break
    return tuple(found)


class SearchIndex:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def search(self, text: str, *, limit: int = MAX_RESULTS) -> list[SearchHit]:
        """The newest cached messages whose words (or file name) start with every word of ``text``."""
        words = query_words(text)
        if not words:
            return []
        # Rowids grow as messages are cached: newest-cached first lets FTS5 stop after ``limit``
        # instead of ranking every match of a short, common prefix.
        rows = self.db.execute(
            "SELECT m.peer, m.seq, m.id, m.sender, m.ts, m.body, m.attachment"
            " FROM (SELECT rowid FROM message_search WHERE message_search MATCH ? ORDER BY rowid DESC LIMIT ?) AS found"
            " JOIN search_rows r ON r.id = found.rowid JOIN messages m ON m.peer = r.peer AND m.seq = r.seq",
            (match_expression(words), limit),
        ).fetchall()
        hits = []
        for peer_, seq, id_, sender, ts, body, attachment in rows:
            file_name = json.loads(attachment).get("name", "") if attachment else ""
            hits.append(SearchHit(peer_, seq, id_, sender, ts, body, file_name, spans(body, words), spans(file_name, words)))
        hits.sort(key=lambda hit: hit.ts, reverse=True)
        return hits[:limit]
