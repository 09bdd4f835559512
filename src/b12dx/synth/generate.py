"""A deterministic synthetic population for testing and benchmarking population screening.

``generate(patients, out, fmt, seed, as_of)`` draws adults with realistic prevalences
(``synth.rates``: every rate with its source; ``docs/screening-population.md``) of diets,
medicines, conditions, symptoms, B12/MMA results and B12 treatment, and writes them as
OMOP CDM 5.4 tables (``omop``: CSV, ``parquet``) or a FHIR Bulk Data export (``ndjson``).
Every 200th person is one of the fixed scenarios (``synth.population.SCENARIOS``): each
screening gap and its near miss, so that even a small population holds them all.

Determinism: people are drawn in blocks of ``BLOCK`` with a generator seeded from
(seed, block number), so the same seed and N give byte-identical files, and the first
5,000 people of a million are the 5,000 people of a 5,000 run. Memory is bounded by the
block, whatever N. The reference date defaults to ``DEFAULT_AS_OF``; every date lies on
or before it, and histories reach back up to about 10 years.

The folder also gets ``b12dx-synth.json`` (``MANIFEST``): the date, seed, size and format
the data was made with, so that ``b12dx screen`` screens it as of the date its histories
end on rather than today (``made_for``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from b12dx.errors import InputError
from b12dx.knowledge.loader import Knowledge, load_knowledge
from b12dx.synth.events import Concepts, Records, records
from b12dx.synth.population import Population, apply_scenarios, draw

Format = Literal["ndjson", "parquet", "omop"]
FORMATS: tuple[Format, ...] = ("ndjson", "parquet", "omop")
DEFAULT_AS_OF = dt.date(2026, 6, 30)
BLOCK = 50_000
MANIFEST = "b12dx-synth.json"


class _Writer(Protocol):
    def write_block(self, pop: Population, rec: Records) -> None: ...

    def close(self) -> None: ...


def population_block(seed: int, block: int, patients: int) -> Population:
    """People block*BLOCK+1 .. (at most BLOCK of them, fewer in the last block)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, block])))
    first = block * BLOCK
    # Always draw a whole block, then keep what is asked for: the draws of each person do
    # not depend on N, so a small run is the start of a large one.
    pop = draw(rng, first + 1, BLOCK)
    keep = min(BLOCK, patients - first)
    if keep < BLOCK:
        pop = Population(**{f.name: getattr(pop, f.name)[:keep] for f in fields(Population)})
    apply_scenarios(pop)
    return pop


def generate(
    patients: int,
    out: Path,
    fmt: Format = "parquet",
    seed: int = 0,
    as_of: dt.date = DEFAULT_AS_OF,
    *,
    kb: Knowledge | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write ``patients`` people to the folder ``out`` (which must exist)."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    kb = kb or load_knowledge()
    concepts = Concepts(kb)
    writer: _Writer
    if fmt == "ndjson":
        from b12dx.synth.fhir import FhirWriter

        writer = FhirWriter(out, as_of, concepts, kb)
    else:
        from b12dx.synth.omop import OmopWriter

        writer = OmopWriter(out, as_of, concepts, parquet=fmt == "parquet")
    try:
        for block in range((patients + BLOCK - 1) // BLOCK):
            pop = population_block(seed, block, patients)
            writer.write_block(pop, records(pop, concepts))
            if progress is not None:
                progress(len(pop))
    finally:
        writer.close()
    write_manifest(out, patients, fmt, seed, as_of)


def write_manifest(out: Path, patients: int, fmt: Format, seed: int, as_of: dt.date) -> None:
    """``out/b12dx-synth.json``, written last: the data beside it is complete."""
    data = {"as_of": as_of.isoformat(), "seed": seed, "patients": patients, "format": fmt}
    partial = out / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    partial.replace(out / MANIFEST)


def made_for(folder: Path) -> dt.date | None:
    """The date the synthetic data in ``folder`` was made for (its manifest's as_of), or
    None when the folder holds no manifest. A manifest that cannot be read is an error:
    screening as of today instead would miscount every dated gap."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        day = json.loads(path.read_text(encoding="utf-8"))["as_of"]
        return dt.date.fromisoformat(day)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError.single(
            "INPUT",
            f"{path} does not give the date the data was made for ({exc})",
            '{"as_of": "YYYY-MM-DD", ...} as `b12dx synth` writes it, or --as-of',
        ) from None
