"""Self-checks for notebook 00 (welcome): a first knowledge-base search, and a first recording of your own
(with a prediction of its wall time, made before the measurement)."""

from __future__ import annotations

import inspect
from numbers import Real

from ..timing import Recorder
from ..tools import kb_search
from . import Feedback, failed, passed

__all__ = ["check_hits", "check_recording", "LIMIT"]

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
            "await the knowledge-base search (with limit=10), then count the findings it gives back",
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


_RECORD_HINT = (
    "make a Recorder of your own, and await both searches indented under `with` it (see 'A first Gantt chart')"
)


def check_recording(rec: object, predicted: object = None) -> Feedback:
    """Check that `rec` is a `Recorder` holding a web search and an API lookup, and the wall time `predicted`.

    Use it as ``nb00.check_recording(my_rec, my_prediction)``. It reads the recording: which
    sources were searched, the wall time, and whether the waits added up (one after another);
    then it compares your prediction (seconds, made before you ran it) with the measured wall time.
    """
    if rec is None or rec is Ellipsis:
        return failed(f"my_rec is {rec!r}: the exercise is not done yet.", _RECORD_HINT)
    if not isinstance(rec, Recorder):
        return failed(f"my_rec should be a Recorder, not {type(rec).__name__}.", _RECORD_HINT)
    if len(rec) == 0:
        return failed(
            f"the recorder {rec.name!r} is empty: the searches ran outside `with my_rec:`, or were never awaited.",
            "indent both `await ...` lines under `with my_rec:`, and keep the `await` in front of each call",
        )
    groups = sorted({s.group for s in rec.spans})
    missing = [g for g in ("web", "api") if g not in groups]
    if missing:
        return failed(
            f"the recorder holds {', '.join(groups)} searches, but no {' and no '.join(missing)} search.",
            "record both: await web_search(my_query) and await api_lookup(my_query), inside `with my_rec:`",
        )
    summary = rec.summary()
    if predicted is None or predicted is Ellipsis:
        return failed(
            f"the recording is right ({summary.spans} searches: {', '.join(groups)}), but my_prediction is "
            f"{predicted!r}: write down how long you expect it to take, in seconds, before you run it again.",
            "the service's delays: web search 0.25 s, external API 0.3 s",
        )
    if isinstance(predicted, bool) or not isinstance(predicted, Real):
        return failed(
            f"my_prediction should be a number of seconds, not {type(predicted).__name__} {predicted!r}.",
            "e.g. my_prediction = 0.4",
        )
    p, wall = float(predicted), summary.wall
    if summary.peak_concurrency > 1:
        return passed(
            f"{summary.spans} searches recorded ({', '.join(groups)}), and they overlapped: wall {wall:.2f} s "
            f"for {summary.busy:.2f} s of waiting (you predicted {p:g} s). That is notebook 01's lesson already."
        )
    if abs(p - wall) > max(0.08, 0.2 * wall):
        hint = (
            "that is about the longest wait alone: these searches ran one after another, so their waits add up"
            if abs(p - summary.longest) <= 0.08
            else "the waits: web 0.25 s and API 0.3 s; one after another, how long in all?"
        )
        return failed(
            f"you predicted {p:g} s, but the {summary.spans} searches took {wall:.2f} s, one after another.", hint
        )
    return passed(
        f"{summary.spans} searches recorded ({', '.join(groups)}), one after another: wall {wall:.2f} s, the sum "
        f"of the waits ({summary.busy:.2f} s), as you predicted ({p:g} s). Your chart is a staircase, like the one above."
    )
