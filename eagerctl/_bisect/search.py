"""Group testing over the candidates: which subsets, made eager, reproduce the difference.

One culprit at a time by halving (a half that does not differ means the
other one does: not tested), checked alone at the end; then the rest of the
pool is tried once more for further culprits: about log2(N) + 2 trials per
culprit. When the halving ends on a candidate that does not differ alone,
the difference needs several together (`together`). A culprit with nested
candidates is narrowed the same way to the innermost one responsible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .candidates import Candidate

MAX_CULPRITS = 5
"""The search stops after this many culprits (3 when the whole difference is at float-rounding level:
then every layer tends to contribute a little)."""

Found = list[tuple[Candidate, bool]]
"""Culprits, each with whether it matters only together with others."""


def keys(candidates: Iterable[Candidate]) -> frozenset[Any]:
    return frozenset(c.key for c in candidates)


class GroupSearch:
    def __init__(self, differs: Callable[[frozenset[Any]], bool]) -> None:
        self.differs = differs
        self.found_keys: set[Any] = set()
        self.max_culprits = MAX_CULPRITS
        self.truncated = False

    def find(self, pool: list[Candidate], fixed: frozenset[Any]) -> Found:
        """Culprits in `pool`, known: `pool` + `fixed` eager differs from compiled, `fixed` alone does not."""
        found: Found = []
        remaining = list(pool)
        while remaining:
            culprit = self._one(remaining, fixed)
            group = [(culprit, bool(fixed))] if culprit is not None else self._together(remaining, fixed)
            found += group
            done = {c.key for c, _ in group}
            remaining = [c for c in remaining if c.key not in done]
            self.found_keys |= done
            if remaining and len(self.found_keys) >= self.max_culprits:
                self.truncated = True
                break
            if not group or not remaining or not self.differs(fixed | keys(remaining)):
                break
        return found

    def _one(self, pool: list[Candidate], fixed: frozenset[Any]) -> Candidate | None:
        while len(pool) > 1:
            half = len(pool) // 2
            pool = pool[:half] if self.differs(fixed | keys(pool[:half])) else pool[half:]
        return pool[0] if self.differs(fixed | {pool[0].key}) else None

    def _together(self, pool: list[Candidate], fixed: frozenset[Any]) -> Found:
        """A small set of candidates from `pool` that differs only together (both halves searched)."""
        if len(pool) == 1:
            return [(pool[0], True)]
        half = len(pool) // 2
        first, second = pool[:half], pool[half:]
        for part in (first, second):
            if self.differs(fixed | keys(part)):
                return self.find(part, fixed)
        in_first = self._together(first, fixed | keys(second))
        in_second = self._together(second, fixed | keys(c for c, _ in in_first))
        return [(c, True) for c, _ in in_first + in_second]

    def narrow(self, candidate: Candidate, fixed: frozenset[Any]) -> Found:
        """The innermost candidates under `candidate` that explain its difference (itself if none)."""
        children = [c for c in candidate.children if c.key not in fixed]
        if not children or not self.differs(fixed | keys(children)):
            return [(candidate, bool(fixed))]
        narrowed: Found = []
        for found, together in self.find(children, fixed):
            for inner, inner_together in self.narrow(found, fixed):
                narrowed.append((inner, together or inner_together))
        return narrowed

    def search(self, top: list[Candidate]) -> Found:
        """The culprits among `top` (the candidates `fn` calls directly) and below them."""
        found: Found = []
        if len(top) == 1:
            # One candidate: try what it calls first; itself only if they do not explain it.
            found = self.narrow(top[0], frozenset())
            if found == [(top[0], False)] and not self.differs(keys(top)):
                found = []
        elif top and self.differs(keys(top)):
            for c, together in self.find(top, frozenset()):
                for inner, inner_together in self.narrow(c, frozenset()):
                    found.append((inner, together or inner_together))
        return found
