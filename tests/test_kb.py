"""The knowledge base: SQLite full-text search over the shipped corpus, built in a cache folder
outside the repo, ranked best first, queried concurrently without blocking the loop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from agency_lib import kb

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh AGENCY_CACHE_DIR: the knowledge base is built there on first use."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("AGENCY_CACHE_DIR", str(folder))
    return folder


def test_the_knowledge_base_is_built_in_agency_cache_dir_on_first_use(cache):
    assert not cache.exists()
    hits = kb.query_kb_blocking("event loop")
    (built,) = cache.glob("kb-*.sqlite")
    assert kb.kb_path() == built
    assert hits and hits[0].title == "The asyncio event loop"


def test_build_kb_is_idempotent_and_leaves_no_temporary_file(cache):
    first = kb.build_kb()
    mtime = first.stat().st_mtime_ns
    assert kb.build_kb() == first and first.stat().st_mtime_ns == mtime  # not rebuilt
    kb.build_kb(force=True)
    assert [p.name for p in cache.iterdir()] == [first.name]


def test_threads_that_all_query_a_cold_cache_at_once_all_get_answers(cache):
    # e.g. `asyncio.to_thread(kb_search_blocking, ...)` gathered on a fresh machine: the first
    # queries all find no database and build it at the same moment
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: kb.query_kb_blocking("event loop"), range(8)))
    assert all(a == answers[0] and a for a in answers)
    assert [p.name for p in cache.iterdir()] == [kb.kb_path().name]  # one database, no temporary file left


def test_a_temporary_file_left_by_a_crashed_build_does_not_get_in_the_way(cache):
    cache.mkdir()
    path = kb.kb_path()
    for leftover in (path.with_suffix(".tmp"), path.with_suffix(f".tmp{os.getpid()}")):
        with closing(sqlite3.connect(leftover)) as db:  # half a database, as a killed build leaves it
            db.execute("CREATE TABLE docs (id TEXT)")
    assert kb.build_kb() == path
    assert kb.query_kb_blocking("event loop")


def test_a_failed_build_leaves_no_temporary_file(cache, monkeypatch, tmp_path):
    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"id": "a", "title": "no body"}\n', encoding="utf-8")
    monkeypatch.setattr(kb, "CORPUS", bad)
    with pytest.raises(KeyError, match="body"):
        kb.build_kb()
    assert list(cache.iterdir()) == []


def test_the_default_location_is_a_user_cache_outside_the_repo(monkeypatch, tmp_path):
    monkeypatch.delenv("AGENCY_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert not kb.kb_path().is_relative_to(REPO)
    assert kb.kb_path().parent == Path.home() / ".cache" / "async-agency"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kb.kb_path().parent == tmp_path / "async-agency"


def test_results_are_ranked_best_first(cache):
    hits = asyncio.run(kb.query_kb("event loop", limit=5))
    assert len(hits) == 5
    scores = [h.score for h in hits]
    assert scores == sorted(scores)  # bm25: lower is better
    assert "[event] [loop]" in hits[0].snippet  # the matched words are marked


def test_a_query_that_matches_nothing_returns_no_hits(cache):
    assert asyncio.run(kb.query_kb("zebra")) == []


def test_async_and_blocking_queries_agree(cache):
    assert asyncio.run(kb.query_kb("connection pool")) == kb.query_kb_blocking("connection pool")


def test_fifty_concurrent_queries_all_get_their_answers(cache):
    words = ["event loop", "gather", "semaphore", "timeout", "retry"] * 10

    async def main():
        return await asyncio.gather(*(kb.query_kb(w) for w in words))

    results = asyncio.run(main())
    expected = {w: kb.query_kb_blocking(w) for w in set(words)}
    assert all(got == expected[w] for w, got in zip(words, results, strict=True))
    assert all(results)


def test_a_query_without_searchable_words_is_a_value_error(cache):
    with pytest.raises(ValueError, match=r"query '\?!…' has no searchable words \(letters or digits\)"):
        asyncio.run(kb.query_kb("?!…"))
    with pytest.raises(ValueError, match="query must be a non-empty string"):
        kb.query_kb_blocking("   ")


def test_search_words_are_not_fts5_syntax(cache):
    # quotes, stars and NEAR/OR are just words to the agency: no FTS5 syntax error
    assert asyncio.run(kb.query_kb('"event" OR loop* NEAR(x)'))


@pytest.mark.parametrize("limit", [0, 51, 2.5, True, "3"])
def test_a_bad_limit_is_a_value_error(cache, limit):
    with pytest.raises(ValueError, match="limit must be an int from 1 to 50"):
        asyncio.run(kb.query_kb("event loop", limit=limit))
