"""The seeds' claims held against the knowledge entries that carry them.

``seed_claims.tsv`` lists, one per line, every factual statement of the five seed
articles (the primary specification) as ``seed file`` TAB ``claim`` TAB ``topic:id,...``.
Each claim must point at entries that exist, and at least one of them must cite that
seed, so that no statement of a seed is silently dropped from the knowledge base.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from b12dx.knowledge import Knowledge
from b12dx.knowledge.consistency import cited_source_ids

CLAIMS_FILE = Path(__file__).parent / "seed_claims.tsv"

# Seed file name -> its citation id (clinical-reference.md).
SEED_IDS: dict[str, str] = {
    "000_b2b7b16491eeb16b.txt": "seed-weakness",
    "001_b9c65cbed278d64b.txt": "seed-atrophy",
    "002_ed3b758722330aa2.txt": "seed-leg-weakness",
    "003_f06ba9ff5098fa47.txt": "seed-achy-legs",
    "004_fd4ede66651337ae.txt": "seed-neuro",
}

MIN_CLAIMS_PER_SEED = 15

_REF = re.compile(r"^[a-z_]+:[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class Claim:
    line: int
    seed: str
    text: str
    refs: tuple[str, ...]

    @property
    def test_id(self) -> str:
        return f"{Path(self.seed).stem}-L{self.line}"


def _parse(path: Path) -> list[Claim]:
    claims: list[Claim] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path.name}:{number}: expected 3 tab-separated fields")
        seed, text, refs = (f.strip() for f in fields)
        claims.append(
            Claim(
                line=number,
                seed=seed,
                text=text,
                refs=tuple(r.strip() for r in refs.split(",") if r.strip()),
            )
        )
    return claims


CLAIMS: list[Claim] = _parse(CLAIMS_FILE)


def _normalise(text: str) -> str:
    return " ".join(text.casefold().rstrip(".").split())


def test_claims_file_is_not_empty() -> None:
    assert CLAIMS, f"{CLAIMS_FILE.name} holds no claims"


def test_seed_ids_match_the_sources_registry(kb: Knowledge) -> None:
    seeds = {s.id: s for s in kb.sources.values() if s.kind == "seed"}
    assert set(seeds) == set(SEED_IDS.values())
    for name, sid in SEED_IDS.items():
        file = seeds[sid].file
        assert file is not None and Path(file).name == name, (sid, file, name)


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.test_id for c in CLAIMS])
def test_claim_is_carried_by_the_knowledge_base(claim: Claim, kb: Knowledge) -> None:
    assert claim.seed in SEED_IDS, f"unknown seed file {claim.seed!r}"
    assert claim.text, "empty claim"
    assert claim.refs, f"claim {claim.text!r} names no knowledge entry"
    seed_id = SEED_IDS[claim.seed]
    topics = kb.topics()
    missing: list[str] = []
    citing: list[str] = []
    for ref in claim.refs:
        assert _REF.match(ref), f"malformed reference {ref!r} (expected topic:id)"
        topic, _, entry_id = ref.partition(":")
        entries = topics.get(topic)
        if entries is None or entry_id not in entries:
            missing.append(ref)
            continue
        if seed_id in set(cited_source_ids(entries[entry_id])):
            citing.append(ref)
    assert not missing, f"unknown knowledge entries: {missing}"
    assert citing, f"none of {list(claim.refs)} cites {seed_id} for the claim {claim.text!r}"


@pytest.mark.parametrize("seed", sorted(SEED_IDS))
def test_every_seed_has_enough_claims(seed: str) -> None:
    count = sum(1 for c in CLAIMS if c.seed == seed)
    assert count >= MIN_CLAIMS_PER_SEED, f"{seed}: only {count} claims"


def test_no_duplicate_claims() -> None:
    counts = Counter(_normalise(c.text) for c in CLAIMS)
    duplicates = sorted(text for text, n in counts.items() if n > 1)
    assert not duplicates, f"duplicate claims: {duplicates}"


def test_no_duplicate_references_within_a_claim() -> None:
    repeated = [c.test_id for c in CLAIMS if len(set(c.refs)) != len(c.refs)]
    assert not repeated, f"claims naming an entry twice: {repeated}"
