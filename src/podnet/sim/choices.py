"""Random decisions on a packet's path (``-m statistic``, ``numgen``), made replayable.

The walker asks a :class:`Chooser` at each random decision; a chooser follows a prescribed list of
branch indexes, then takes branch 0 and records every decision. ``explore`` enumerates every path
(depth-first, each leaf once) with its probability, which is how ``podnet trace`` reports random
load balancing as the set of possible endpoints. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Decision:
    where: str                                    # "nat/KUBE-SVC-... #2"
    options: tuple[tuple[str, float], ...]        # (label, probability) per branch
    taken: int

    @property
    def probability(self) -> float:
        return self.options[self.taken][1]

    @property
    def label(self) -> str:
        return self.options[self.taken][0]


class Chooser:
    __slots__ = ("made", "prescribed")

    def __init__(self, prescribed: Sequence[int] = ()) -> None:
        self.prescribed = tuple(prescribed)
        self.made: list[Decision] = []

    def branch(self, where: str, options: Sequence[tuple[str, float]]) -> int:
        i = len(self.made)
        idx = self.prescribed[i] if i < len(self.prescribed) else 0
        if idx >= len(options):
            idx = 0
        self.made.append(Decision(where, tuple(options), idx))
        return idx

    @property
    def probability(self) -> float:
        p = 1.0
        for d in self.made:
            p *= d.probability
        return p


def explore(run: Callable[[Chooser], T], limit: int = 64) -> tuple[list[tuple[T, Chooser]], bool]:
    """Run ``run`` once per possible path (branches of probability 0 are skipped). Returns the
    results in branch order (first option first) and whether ``limit`` cut the enumeration."""
    out: list[tuple[T, Chooser]] = []
    stack: list[tuple[int, ...]] = [()]
    while stack:
        if len(out) >= limit:
            return out, True
        prefix = stack.pop()
        ch = Chooser(prefix)
        result = run(ch)
        out.append((result, ch))
        # every decision made beyond the prefix has unexplored alternatives
        alts: list[tuple[int, ...]] = []
        for j in range(len(prefix), len(ch.made)):
            d = ch.made[j]
            base = tuple(x.taken for x in ch.made[:j])
            for k in range(len(d.options) - 1, 0, -1):
                if d.options[k][1] > 0:
                    alts.append((*base, k))
        stack.extend(alts)                 # popped deepest decision first, its options in order
    return out, False
