"""Build explained items: every statement names its rule and carries its sources."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, TypeVar

from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Explained

E = TypeVar("E", bound=Explained)


def merge_sources(*groups: Iterable[str]) -> list[str]:
    """Source ids in first-seen order, without repeats."""
    return list(dict.fromkeys(s for group in groups for s in group))


@functools.lru_cache(maxsize=4096)
def _merged(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    # Source lists come from the knowledge base, so the same pairs recur in every
    # assessment; merging them once is worth it on the API's hot path.
    return tuple(dict.fromkeys((*first, *second)))


def explained(
    kb: Knowledge,
    model: type[E],
    rule: str,
    text: str | None = None,
    sources: Iterable[str] = (),
    **fields: Any,
) -> E:
    """An item produced by ``rule``: its text defaults to the rule's, its sources are the
    rule's plus any given."""
    r = kb.rules[rule]
    return model(
        rule=rule,
        text=text if text is not None else r.text,
        sources=_merged(tuple(sources), tuple(r.sources)),
        **fields,
    )
