"""Code lookups built from the knowledge base: a FHIR coding -> what it means to b12dx.

The tables themselves are data (``knowledge/data/*.yaml``); this module only indexes
them by (code system, code) so a resource is mapped with one dictionary lookup per
coding. ICD-10 and ATC are hierarchies, so E11.9 finds type 2 diabetes (E11) and
A02BC01 finds the proton pump inhibitors (A02BC).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from b12dx.fhir.read import element
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Code

# What a code can stand for in a patient record.
KINDS = ("symptom", "condition", "medication", "exposure", "lab")


@dataclass(frozen=True)
class Meaning:
    kind: str  # one of KINDS, or a qualifier table name ("pregnancy", "diet:vegan", ...)
    id: str
    code: Code

    @property
    def ids(self) -> tuple[str, ...]:
        """The entry's id and those a combination code also records (``Code.also``)."""
        return (self.id, *self.code.also)


@dataclass(frozen=True)
class CodeIndex:
    system_by_uri: Mapping[str, str]
    uri_by_system: Mapping[str, str]
    hierarchical: frozenset[str]
    table: Mapping[tuple[str, str], Meaning]

    def system_of(self, uri: str | None) -> str | None:
        return self.system_by_uri.get(uri or "")

    def lookup(self, system_uri: str | None, code: str | None) -> Meaning | None:
        """The meaning of one coding, or None when b12dx has no use for it."""
        system = self.system_of(system_uri)
        if system is None or not code:
            return None
        key = code.strip()
        if system not in self.hierarchical:
            return self.table.get((system, key))
        key = key.upper().rstrip(".")
        # Walk up the hierarchy: E11.42 -> E11.4 -> E11; A02BC01 -> A02BC.
        while len(key) >= 3:
            found = self.table.get((system, key))
            if found is not None:
                return found
            key = key[:-1].rstrip(".")
        return None

    def first(self, codings: Iterable[Any], kinds: Iterable[str] | None = None) -> Meaning | None:
        """The first coding (FHIR Coding models or dicts) that maps, restricted to kinds."""
        wanted = set(kinds) if kinds is not None else None
        for coding in codings:
            system = element(coding, "system")
            code = element(coding, "code")
            meaning = self.lookup(system, code)
            if meaning is not None and (wanted is None or meaning.kind in wanted):
                return meaning
        return None


def code_index(kb: Knowledge) -> CodeIndex:
    """The index for this knowledge base (built once and kept with it)."""
    key = ("fhir", "code_index")
    cached = kb.derived.get(key)
    if cached is None:
        cached = kb.derived[key] = _build(kb)
    assert isinstance(cached, CodeIndex)
    return cached


def _build(kb: Knowledge) -> CodeIndex:
    fm = kb.fhir
    system_by_uri = {uri: cs.name for cs in fm.code_systems for uri in cs.uris}
    uri_by_system: dict[str, str] = {cs.name: cs.uris[0] for cs in fm.code_systems}
    hierarchical = frozenset(cs.name for cs in fm.code_systems if cs.hierarchical)
    table: dict[tuple[str, str], Meaning] = {}

    def add(kind: str, entry_id: str, codes: Iterable[Code]) -> None:
        for c in codes:
            key = c.code.upper() if c.system in hierarchical else c.code
            table.setdefault((c.system, key), Meaning(kind, entry_id, c))

    for s in kb.symptoms.values():
        add("symptom", s.id, s.codes)
    for c in kb.conditions.values():
        add("condition", c.id, c.codes)
    for m in kb.medications.values():
        add("medication", m.id, m.codes)
    for e in kb.exposures.values():
        add("exposure", e.id, e.codes)
    for lab in kb.labs.values():
        add("lab", lab.id, lab.codes)
    add("pregnancy", "pregnant", fm.pregnancy)
    for diet, codes in fm.diet.items():
        add("diet", diet, codes)
    return CodeIndex(system_by_uri, uri_by_system, hierarchical, table)


def _same(index: CodeIndex, coding: Any, option: Code) -> bool:
    # A coding without a system is matched on its code alone (common in hand-made data).
    uri = element(coding, "system")
    return element(coding, "code") == option.code and (
        not uri or index.system_of(uri) == option.system
    )


def qualifier(
    index: CodeIndex, table: Mapping[Any, list[Code]], codings: Iterable[Any]
) -> str | None:
    """Which key of a small qualifier table (severity, route, ...) a coding names."""
    for coding in codings:
        for key, options in table.items():
            if any(_same(index, coding, o) for o in options):
                return str(key)
    return None


def in_codes(index: CodeIndex, codes: Iterable[Code], codings: Iterable[Any]) -> bool:
    options = list(codes)
    return any(_same(index, coding, o) for coding in codings for o in options)
