"""The agency's knowledge base: SQLite full-text search (FTS5) over a corpus shipped in the repo.

The database is built on first use in a cache folder outside the repo
(``$AGENCY_CACHE_DIR``, else ``$XDG_CACHE_HOME/async-agency``, else
``~/.cache/async-agency``) and rebuilt when the corpus changes. Concurrent first uses
(threads, or processes such as pytest-xdist workers) each build into a temporary file of
their own and move it into place atomically. Queries run through aiosqlite, so they do not
block the event loop; each query opens its own connection, so concurrent queries work and
no thread outlives the query.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

__all__ = ["KBHit", "kb_path", "build_kb", "query_kb", "query_kb_blocking"]

CORPUS = Path(__file__).with_name("data") / "kb_corpus.jsonl"

_SQL = """
SELECT d.id, d.title, snippet(docs_fts, 1, '[', ']', '…', 12), bm25(docs_fts) AS score
FROM docs_fts JOIN docs d ON d.rowid = docs_fts.rowid
WHERE docs_fts MATCH ? ORDER BY score LIMIT ?
"""


@dataclass(frozen=True)
class KBHit:
    """One ranked document: lower bm25 score = better match (SQLite's convention)."""

    id: str
    title: str
    snippet: str
    score: float


def _cache_dir() -> Path:
    if os.environ.get("AGENCY_CACHE_DIR"):
        return Path(os.environ["AGENCY_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "async-agency"


def _corpus_digest() -> str:
    return hashlib.sha256(CORPUS.read_bytes()).hexdigest()[:16]


def kb_path() -> Path:
    """Where the knowledge base file lives (it may not exist yet)."""
    return _cache_dir() / f"kb-{_corpus_digest()}.sqlite"


_build_lock = threading.Lock()  # one build at a time in this process; other processes use their own files


def build_kb(force: bool = False) -> Path:
    """Build the knowledge base from the shipped corpus if needed; return its path."""
    if not CORPUS.exists():
        raise FileNotFoundError(f"the knowledge-base corpus is missing ({CORPUS.name}); reinstall agency_lib.")
    path = kb_path()
    if path.exists() and not force:
        return path
    with _build_lock:
        if path.exists() and not force:  # another thread built it while this one waited
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        docs = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
        fd, name = tempfile.mkstemp(prefix=f"{path.stem}.", suffix=".tmp", dir=path.parent)  # a fresh, empty file
        os.close(fd)
        tmp = Path(name)
        try:
            with closing(sqlite3.connect(tmp)) as db, db:
                db.execute(
                    "CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT UNIQUE, title TEXT, body TEXT, tags TEXT)"
                )
                db.execute(
                    "CREATE VIRTUAL TABLE docs_fts USING fts5(title, body, content='docs', content_rowid='rowid')"
                )
                db.executemany(
                    "INSERT INTO docs (id, title, body, tags) VALUES (?, ?, ?, ?)",
                    [(d["id"], d["title"], d["body"], " ".join(d.get("tags", []))) for d in docs],
                )
                db.execute("INSERT INTO docs_fts (rowid, title, body) SELECT rowid, title, body FROM docs")
            try:
                os.replace(tmp, path)  # atomic: a concurrent reader never sees half a database
            except PermissionError:  # Windows: another process holds the finished file open; it is the same
                if not path.exists():
                    raise
        finally:
            tmp.unlink(missing_ok=True)  # a failed build leaves nothing behind
    return path


def _match_expr(query: str) -> str:
    """Turn free text into an FTS5 query: any of the words, prefix-matched."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string, e.g. 'connection pool'.")
    words = re.findall(r"[A-Za-z0-9]+", query.lower())
    if not words:
        raise ValueError(f"query {query!r} has no searchable words (letters or digits).")
    return " OR ".join(f'"{w}"*' for w in words)


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 50:
        raise ValueError(f"limit must be an int from 1 to 50, not {limit!r}.")


async def query_kb(query: str, limit: int = 3) -> list[KBHit]:
    """Full-text search, best match first, without blocking the event loop."""
    _check_limit(limit)
    expr = _match_expr(query)
    async with aiosqlite.connect(f"file:{build_kb()}?mode=ro", uri=True) as db:
        async with db.execute(_SQL, (expr, limit)) as cur:
            rows = await cur.fetchall()
    return [KBHit(*row) for row in rows]


def query_kb_blocking(query: str, limit: int = 3) -> list[KBHit]:
    """The same search with plain sqlite3: it blocks the calling thread."""
    _check_limit(limit)
    expr = _match_expr(query)
    with closing(sqlite3.connect(f"file:{build_kb()}?mode=ro", uri=True)) as db:
        rows = db.execute(_SQL, (expr, limit)).fetchall()
    return [KBHit(*row) for row in rows]
