"""Self-checks for the exercises: each says what is right, or what is wrong and a hint.

Every notebook has its own module (``from agency_lib.checks import nb01``); the common
machinery is `Feedback`, which prints as one or more readable lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Feedback", "passed", "failed"]


@dataclass(frozen=True)
class Feedback:
    """The outcome of a self-check. Truthy when it passed; prints as ✅ / ❌ lines."""

    ok: bool
    message: str
    hints: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        lines = [("✅ " if self.ok else "❌ ") + self.message]
        lines += [f"   hint: {h}" for h in self.hints]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython: show the plain lines
        p.text(str(self))


def passed(message: str) -> Feedback:
    """A passed check."""
    return Feedback(True, message)


def failed(message: str, *hints: str) -> Feedback:
    """A failed check: what is wrong, then hints towards the fix."""
    return Feedback(False, message, tuple(hints))
