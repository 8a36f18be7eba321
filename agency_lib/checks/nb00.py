"""Self-check for notebook 00 (welcome): await your first knowledge-base search and count the hits."""

from __future__ import annotations

import inspect

from ..tools import kb_search
from . import Feedback, failed, passed

__all__ = ["check_hits", "LIMIT"]

#: The exercise asks for ``kb_search(query, limit=LIMIT)``.
LIMIT = 10


async def check_hits(query: str, n_hits: object) -> Feedback:
    """Check that `n_hits` is the number of findings ``await kb_search(query, limit=10)`` returns.

    The check runs the same search itself and compares. Use it as
    ``await nb00.check_hits(query, n_hits)``.
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query must be the non-empty text you searched for, e.g. 'event loop', not {query!r}.")
    if inspect.iscoroutine(n_hits):
        n_hits.close()  # dropped on purpose: no "never awaited" warning later
        return failed(
            "n_hits is a coroutine object, not a number: calling kb_search(...) only made the coroutine, "
            "nothing was searched.",
            "put `await` in front of the call: findings = await kb_search(query, limit=10)",
        )
    if n_hits is None or n_hits is Ellipsis:
        return failed(
            f"n_hits is {n_hits!r}: the exercise is not done yet.",
            "findings = await kb_search(query, limit=10), then n_hits = len(findings)",
        )
    if isinstance(n_hits, list):
        return failed(
            f"n_hits is a list of {len(n_hits)} items: that is the findings themselves, not their count.",
            "count them: n_hits = len(findings)",
        )
    if isinstance(n_hits, bool) or not isinstance(n_hits, int):
        return failed(
            f"n_hits should be a whole number, not {type(n_hits).__name__} {n_hits!r}.",
            "n_hits = len(findings)",
        )
    findings = await kb_search(query, limit=LIMIT)
    expected = len(findings)
    if n_hits != expected:
        hints = ["n_hits = len(findings), where findings = await kb_search(query, limit=10)"]
        if n_hits == 3 < expected:
            hints.insert(0, "you may have used the default limit (3): pass limit=10")
        return failed(f"the knowledge base has {expected} hits for {query!r} (limit=10), not {n_hits}.", *hints)
    if expected == 0:
        return passed(
            f"0 hits for {query!r} is right: the knowledge base has nothing on it. Try 'event loop' to see some."
        )
    return passed(f"{expected} hits for {query!r}; the best is {findings[0]['title']!r}. Your first await worked.")
