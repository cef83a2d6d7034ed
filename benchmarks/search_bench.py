"""Search over a large cached history: our query time beside SQLite's own FTS5 time on the same data.

    python benchmarks/search_bench.py [--messages 1000000] [--queries 300] [--runs 3] [--json PATH]

Builds a client cache (``tui_chat.client.localdb.open_db``, so the real schema, triggers and
migration) of ``--messages`` messages in 40 conversations, written through ``Cache.add`` in
batches as catch-up writes them. Bodies are 4-20 words drawn with a Zipf-like skew from a 20,000
word vocabulary (some with diacritics), so common prefixes match hundreds of thousands of rows
and rare words a handful. Then, for a fixed mix of queries (a 2-3 letter prefix of a common word,
a whole common word, a rare word, two words, three words):

- ours: ``SearchIndex.search`` — the FTS5 match, the join back to the messages, the folding and
  highlight offsets in Python, the result objects (what the app calls on every keystroke);
- yardstick: the bare FTS5 statement alone (``SELECT rowid ... MATCH ? ORDER BY rowid DESC
  LIMIT 50``) through Python's sqlite3, and the same statement in the ``sqlite3`` shell
  (``.timer on``, its own "real" time), when the shell is installed.

Reports p50/p99 per run, the median over runs, and the index's size per message (the FTS5
tables and ``search_rows``, from ``dbstat``) beside the messages table's own size per message.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tui_chat.client.cache import Cache  # noqa: E402
from tui_chat.client.localdb import open_db  # noqa: E402
from tui_chat.client.search import SearchIndex, match_expression, query_words  # noqa: E402
from tui_chat.protocol import Message  # noqa: E402

VOCABULARY = 20_000
CONVERSATIONS = 40
BATCH = 2_000
ME = "me"
BARE_SQL = "SELECT rowid FROM message_search WHERE message_search MATCH ? ORDER BY rowid DESC LIMIT 50"


def vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    accented = "éèüöäçñå"
    words = set()
    while len(words) < VOCABULARY:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 10)))
        if rng.random() < 0.05:
            at = rng.randrange(len(word))
            word = word[:at] + rng.choice(accented) + word[at + 1 :]
        words.add(word)
    return sorted(words, key=lambda w: rng.random())


def build(path: Path, count: int, rng: random.Random, words: list[str]) -> float:
    weights = [1 / (rank + 1) for rank in range(len(words))]  # Zipf-like: a few words are everywhere
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    db = open_db(path)
    cache = Cache(db, ME)
    peers = [f"friend{n:02d}" if n % 4 else f"#room{n:02d}" for n in range(CONVERSATIONS)]
    seqs = dict.fromkeys(peers, 0)
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        batch = []
        for n in range(start, min(start + BATCH, count)):
            peer = peers[n % CONVERSATIONS]
            seqs[peer] += 1
            body = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(4, 20)))
            sender = peer if not peer.startswith("#") else f"member{n % 7}"
            batch.append(Message(seq=seqs[peer], id=f"m{n:09d}", sender=sender, to=ME if not peer.startswith("#") else peer,
                                 body=body, ts=1_700_000_000_000 + n * 1000))  # fmt: skip
        cache.add(batch)
    elapsed = time.perf_counter() - started
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return elapsed


def queries(rng: random.Random, words: list[str], n: int) -> list[str]:
    common, rare = words[:50], words[-5000:]
    kinds = [
        lambda: rng.choice(common)[: rng.randint(2, 3)],  # a short prefix of a common word: the worst case
        lambda: rng.choice(common),
        lambda: rng.choice(rare),
        lambda: f"{rng.choice(common)} {rng.choice(words[:2000])[:4]}",
        lambda: " ".join(rng.choice(words[:5000]) for _ in range(3)),
    ]
    return [kinds[i % len(kinds)]() for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_ours(path: Path, texts: list[str]) -> list[float]:
    db = open_db(path)
    index = SearchIndex(db)
    index.search(texts[0])  # the first query reads the index's root pages from disk
    times = []
    for text in texts:
        started = time.perf_counter()
        index.search(text)
        times.append((time.perf_counter() - started) * 1000)
    db.close()
    return times


def time_bare(path: Path, texts: list[str]) -> list[float]:
    db = open_db(path)
    db.execute(BARE_SQL, (match_expression(query_words(texts[0])),)).fetchall()
    times = []
    for text in texts:
        expression = match_expression(query_words(text))
        started = time.perf_counter()
        db.execute(BARE_SQL, (expression,)).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    db.close()
    return times


def time_shell(path: Path, texts: list[str]) -> list[float] | None:
    """The same statement in the sqlite3 shell, timed by the shell itself (.timer on)."""
    shell = shutil.which("sqlite3")
    if shell is None:
        return None
    lines = [".timer on", ".output /dev/null"]
    for text in texts:
        expression = match_expression(query_words(text)).replace("'", "''")
        lines.append(BARE_SQL.replace("?", f"'{expression}'") + ";")
    done = subprocess.run([shell, str(path)], input="\n".join(lines), capture_output=True, text=True, check=True)
    times = [float(m) * 1000 for m in re.findall(r"Run Time: real ([0-9.]+)", done.stdout + done.stderr)]
    return times[1:] if len(times) > 1 else times  # the first warms the cache, as above


def sizes(path: Path, count: int) -> dict:
    db = open_db(path)
    rows = dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    db.close()
    index = sum(v for k, v in rows.items() if k.startswith("message_search") or k.startswith("search_rows") or "autoindex_search_rows" in k)
    messages = sum(v for k, v in rows.items() if k == "messages")
    return {"index_bytes_per_message": index / count, "messages_bytes_per_message": messages / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rng = random.Random(42)
    words = vocabulary(rng)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cache.db"
        build_s = build(path, args.messages, rng, words)
        print(f"built {args.messages:,} messages in {build_s:.0f} s ({args.messages / build_s:,.0f} msgs/s through Cache.add with the index)")
        texts = queries(random.Random(7), words, args.queries)
        runs = []
        for run in range(args.runs):
            ours, bare, shell = time_ours(path, texts), time_bare(path, texts), time_shell(path, texts)
            figures = {"ours_p50": percentile(ours, 0.5), "ours_p99": percentile(ours, 0.99),
                       "bare_p50": percentile(bare, 0.5), "bare_p99": percentile(bare, 0.99)}  # fmt: skip
            if shell:
                figures |= {"shell_p50": percentile(shell, 0.5), "shell_p99": percentile(shell, 0.99)}
            runs.append(figures)
            print(f"run {run + 1}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in figures.items()))
        result = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        result |= sizes(path, args.messages)
        result |= {"messages": args.messages, "queries": args.queries, "runs": args.runs, "build_s": build_s}
    print(f"median of {args.runs} runs over {args.messages:,} messages, {args.queries} queries each:")
    print(f"  ours (SearchIndex.search)  p50 {result['ours_p50']:.2f} ms  p99 {result['ours_p99']:.2f} ms")
    print(f"  bare FTS5 via Python       p50 {result['bare_p50']:.2f} ms  p99 {result['bare_p99']:.2f} ms")
    if "shell_p50" in result:
        print(f"  bare FTS5 in sqlite3 shell p50 {result['shell_p50']:.2f} ms  p99 {result['shell_p99']:.2f} ms")
    print(f"  index: {result['index_bytes_per_message']:.0f} bytes per message (the messages table: {result['messages_bytes_per_message']:.0f})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
