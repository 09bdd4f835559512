"""Which rules made an assessment is known: the engine_version and knowledge_version an
assessment carries move with every clinical change.

tests/fixtures/clinical_versions.json holds, for each released pair of versions, a digest
of what decides an assessment (the knowledge data and the engine's sources). The current
versions must be the newest entry and its digest the digest of the tree: a change to the
knowledge or the engine without new versions fails here, and so do new versions without
a recorded digest. After a clinical change: raise the versions (src/b12dx/version.py,
knowledge/data/meta.yaml), say what changed clinically in CHANGELOG.md, and add an entry
with the digest this test prints.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from b12dx.knowledge.loader import DATA_DIR, load_knowledge
from b12dx.version import ENGINE_VERSION

ROOT = Path(__file__).parent.parent
HISTORY = Path(__file__).parent / "fixtures" / "clinical_versions.json"
ENGINE = ROOT / "src" / "b12dx" / "engine"


def clinical_digest() -> str:
    """SHA-256 of every knowledge data file and engine source, by name, line endings
    folded (a checkout on Windows is the same tree)."""
    h = hashlib.sha256()
    for path in [*sorted(DATA_DIR.glob("*.yaml")), *sorted(ENGINE.glob("*.py"))]:
        h.update(f"{path.parent.name}/{path.name}\n".encode())
        h.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return h.hexdigest()


def test_the_versions_move_with_every_clinical_change() -> None:
    history = json.loads(HISTORY.read_text())
    latest = history[-1]
    now = {"engine_version": ENGINE_VERSION, "knowledge_version": load_knowledge().version}
    digest = clinical_digest()
    assert {k: latest[k] for k in now} == now, (
        f"the versions {now} are not the newest entry of {HISTORY.name}: add it with "
        f"digest {digest}"
    )
    assert latest["digest"] == digest, (
        "the knowledge data or the engine changed without new versions: raise "
        "ENGINE_VERSION and knowledge_version, note the change in CHANGELOG.md and add "
        f"an entry to {HISTORY.name} with digest {digest}"
    )


def test_each_pair_of_versions_stands_for_one_digest() -> None:
    history = json.loads(HISTORY.read_text())
    pairs = [(e["engine_version"], e["knowledge_version"]) for e in history]
    assert len(pairs) == len(set(pairs)), "a pair of versions reused for another digest"
    assert len({e["digest"] for e in history}) == len(history)


def test_every_version_is_in_the_changelog() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    for entry in json.loads(HISTORY.read_text()):
        assert f"engine {entry['engine_version']}" in changelog, entry
        assert f"knowledge {entry['knowledge_version']}" in changelog, entry
