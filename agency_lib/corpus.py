"""Deterministic search results for the local service: the same query gives the same answer."""

from __future__ import annotations

import hashlib

__all__ = ["fake_results"]

_WEB_SITES = ["devjournal.example", "pyweekly.example", "graphnotes.example", "ioblog.example", "asyncfaq.example"]
_WEB_TEMPLATES = [
    "A practical guide to {q}",
    "{q}: five mistakes teams make",
    "What we learned shipping {q} in production",
    "{q}, explained with diagrams",
    "Benchmarks: {q} under load",
]
_API_FIELDS = ["mentions_last_30_days", "trend_score", "related_topics", "audience_interest"]


def _pick(seq: list[str], *parts: object) -> str:
    h = int(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=4).hexdigest(), 16)
    return seq[h % len(seq)]


def fake_results(source: str, query: str, limit: int = 3) -> list[dict[str, object]]:
    """Results for a web search or an external-API lookup, a pure function of its arguments."""
    limit = max(1, min(int(limit), 10))
    if source == "web":
        out: list[dict[str, object]] = []
        for i in range(limit):
            site = _pick(_WEB_SITES, query, i)
            title = _pick(_WEB_TEMPLATES, query, "t", i).format(q=query)
            path = hashlib.blake2b(f"{query}|{i}".encode(), digest_size=3).hexdigest()
            out.append({"title": title, "url": f"https://{site}/{path}", "rank": i + 1})
        return out
    if source == "api":
        h = int(hashlib.blake2b(query.encode(), digest_size=4).hexdigest(), 16)
        return [
            {
                "field": f,
                "value": (h >> (8 * i)) % 1000 if f != "related_topics" else _pick(_WEB_SITES, query).split(".")[0],
            }
            for i, f in enumerate(_API_FIELDS[:limit])
        ]
    raise ValueError(f"unknown source {source!r}: the service serves 'web' and 'api'.")
