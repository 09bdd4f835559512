"""The synthetic screening population: deterministic, realistic, complete, and readable."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from b12dx.cli import synth as synth_cli
from b12dx.fhir.read import read_bulk_export
from b12dx.fhir.record import record_from_resources
from b12dx.knowledge.loader import load_knowledge
from b12dx.synth.events import FIRST_LOCAL_CONCEPT, Concepts
from b12dx.synth.generate import BLOCK, DEFAULT_AS_OF, generate, made_for, population_block
from b12dx.synth.omop import FEMALE, MALE, SCHEMAS
from b12dx.synth.population import SCENARIO_STRIDE, SCENARIOS
from b12dx.synth.rates import BY_AGE, RATES

KB = load_knowledge()
DOC = Path(__file__).resolve().parents[1] / "docs" / "screening-population.md"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ndjson")
    generate(5_000, out, "ndjson", seed=0, kb=KB)
    return out


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parquet")
    generate(5_000, out, "parquet", seed=0, kb=KB)
    return out


# -- determinism ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "omop", "ndjson"])
def test_same_seed_gives_identical_files_and_another_seed_different_ones(
    tmp_path: Path, fmt: Any
) -> None:
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        (tmp_path / name).mkdir()
        generate(2_000, tmp_path / name, fmt, seed=seed, kb=KB)
        runs[name] = _digest(tmp_path / name)
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_a_small_population_is_the_start_of_a_large_one() -> None:
    small = population_block(3, 0, 1_000)
    large = population_block(3, 0, BLOCK + 10)
    for name in ("age", "female", "ppi_day", "b12_day", "b12_pmol", "tx_day", "scenario"):
        assert np.array_equal(getattr(small, name), getattr(large, name)[:1_000]), name


# -- the gaps and their near misses ------------------------------------------------------


def _flags(record: dict[str, Any], as_of: dt.date) -> set[str]:
    """The screening situations of one record, written out plainly from the issue."""
    days = lambda d: (as_of - dt.date.fromisoformat(d)).days  # noqa: E731
    meds = {m["id"]: m["duration_months"] for m in record.get("medications", [])}
    conds = {c["id"] for c in record.get("conditions", [])}
    b12 = [lab for lab in record.get("labs", []) if lab["test"] in ("total_b12", "active_b12")]
    mma = [days(lab["date"]) for lab in record.get("labs", []) if lab["test"] == "mma"]
    doses = [days(d["date"]) for d in record.get("b12_treatment", [])]
    tested_12m = any(days(lab["date"]) < 365 for lab in b12)
    risk = (
        "metformin" in meds
        or meds.get("proton_pump_inhibitor", 0) >= 24
        or meds.get("h2_blocker", 0) >= 24
        or bool(
            conds & {"pernicious_anemia", "gastrectomy", "bariatric_surgery", "ileal_resection"}
        )
        or record.get("diet") == "vegan"
        or any(e["id"] == "nitrous_oxide" for e in record.get("exposures", []))
    )
    symptomatic = bool(record.get("symptoms")) or "diabetic_neuropathy" in conds
    flags = set()
    # A nerve symptom (every generated symptom but fatigue) first recorded within 7 days.
    if any(
        s["id"] != "fatigue" and s.get("duration_weeks", 99) * 7 <= 7
        for s in record.get("symptoms", [])
    ):
        flags.add("new_finding")
    if risk and symptomatic and not tested_12m:
        flags.add("untested_at_risk")
    if "metformin" in meds and not tested_12m:
        flags.add("monitoring_due")
    for lab in b12:
        pmol = lab["value"] * (0.7378 if lab["unit"] != "pmol/L" else 1)
        when = days(lab["date"])
        if 133 <= pmol <= 258 and not any(0 <= when - m <= 91 for m in mma):
            flags.add("indeterminate_not_followed_up")
        if pmol < 133 and not any(0 <= when - d <= 30 for d in doses):
            flags.add("deficient_untreated")
    if "folic_acid" in meds and not b12 and not doses:
        flags.add("folic_acid_without_b12")
    if len(doses) > 6 and min(doses) > 90 + 28:
        flags.add("maintenance_overdue")
    return flags


def test_every_scenario_is_in_5000_people_and_reads_back_with_its_flags(bulk: Path) -> None:
    export = read_bulk_export(bulk)
    seen: dict[str, int] = {}
    for pid, resources in export:
        index = int(pid) - 1
        if index % SCENARIO_STRIDE != SCENARIO_STRIDE // 2:
            continue
        name, expected, _ = SCENARIOS[(index // SCENARIO_STRIDE) % len(SCENARIOS)]
        record = record_from_resources(resources, DEFAULT_AS_OF, KB).record
        assert _flags(record, DEFAULT_AS_OF) == set(expected), (name, record)
        seen[name] = seen.get(name, 0) + 1
    assert set(seen) == {s[0] for s in SCENARIOS}


def test_every_flag_also_occurs_naturally_outside_the_scenarios(bulk: Path) -> None:
    export = read_bulk_export(bulk)
    found: dict[str, int] = {}
    for pid, resources in export:
        if (int(pid) - 1) % SCENARIO_STRIDE == SCENARIO_STRIDE // 2:
            continue
        record = record_from_resources(resources, DEFAULT_AS_OF, KB).record
        for flag in _flags(record, DEFAULT_AS_OF):
            found[flag] = found.get(flag, 0) + 1
    assert set(found) == {f for s in SCENARIOS for f in s[1]}
    assert sum(found.values()) < 5_000 * 0.2  # most people have nothing to flag


def test_nothing_generated_is_ignored_by_the_fhir_import(bulk: Path) -> None:
    export = read_bulk_export(bulk)
    assert export.problems == []
    checked = 0
    for pid, resources in export:
        if int(pid) % 7 and (int(pid) - 1) % SCENARIO_STRIDE != SCENARIO_STRIDE // 2:
            continue
        result = record_from_resources(resources, DEFAULT_AS_OF, KB)
        assert result.ignored == [], (pid, result.ignored)
        checked += 1
    assert checked > 700


# -- rates ------------------------------------------------------------------------------


def test_rates_match_the_documented_prevalences() -> None:
    blocks = [population_block(11, b, 4 * BLOCK) for b in range(4)]
    natural = [p.scenario < 0 for p in blocks]

    def share(field: str, cond: Any = None, among: Any = None) -> tuple[float, int]:
        num = den = 0
        for pop, keep in zip(blocks, natural, strict=True):
            base = keep if among is None else keep & among(pop)
            value = getattr(pop, field)
            hit = (value >= 0) if cond is None else cond(value)
            num += int((hit & base).sum())
            den += int(base.sum())
        return num / den, den

    def near(observed: tuple[float, int], expected: float) -> None:
        share, n = observed
        sd = (expected * (1 - expected) / n) ** 0.5  # 4 binomial standard deviations
        assert abs(share - expected) < max(4 * sd, expected * 0.05), (share, expected)

    bands = np.asarray(BY_AGE["age_band_share"])
    near(share("female", lambda v: v), RATES["female"].value)
    near(share("diet", lambda v: v == 2), RATES["vegan"].value)
    near(share("diet", lambda v: v == 1), RATES["vegetarian"].value)
    near(share("t2d_day"), float(np.dot(bands, BY_AGE["type2_diabetes"])))
    near(share("metformin_day", among=lambda p: p.t2d_day >= 0), RATES["metformin_if_t2d"].value)
    near(share("ppi_day"), float(np.dot(bands, BY_AGE["ppi"])))
    near(share("h2_day"), RATES["h2_blocker"].value)
    near(share("bariatric_day"), float(np.dot(bands, BY_AGE["bariatric_surgery"])))
    near(share("pa_day"), float(np.dot(bands, BY_AGE["pernicious_anemia"])))
    near(share("folic_day"), RATES["folic_acid"].value)
    near(share("n2o_day", among=lambda p: p.age <= 24), RATES["nitrous_oxide_18_24"].value)
    assert share("n2o_day", among=lambda p: p.age > 24)[0] == 0
    near(share("age", lambda v: v >= 75), float(bands[-1]))


def test_every_rate_is_documented_with_its_source() -> None:
    text = DOC.read_text()
    for rate in RATES.values():
        assert f"`{rate.id}`" in text, rate.id
        assert rate.basis in ("reference", "published", "derived", "assumption")
        assert rate.source


# -- OMOP -------------------------------------------------------------------------------

CDM_COLUMNS = {
    "person": ["person_id", "gender_concept_id", "year_of_birth", "month_of_birth",
               "day_of_birth", "birth_datetime", "race_concept_id", "ethnicity_concept_id",
               "gender_source_value"],
    "drug_exposure": ["drug_exposure_id", "person_id", "drug_concept_id",
                      "drug_exposure_start_date", "drug_exposure_end_date", "days_supply",
                      "route_source_value", "drug_source_value", "quantity",
                      "dose_unit_source_value"],
    "measurement": ["measurement_id", "person_id", "measurement_concept_id", "measurement_date",
                    "value_as_number", "value_as_concept_id", "unit_source_value", "range_low",
                    "range_high", "measurement_source_value"],
    "condition_occurrence": ["condition_occurrence_id", "person_id", "condition_concept_id",
                             "condition_start_date", "condition_end_date",
                             "condition_source_value"],
    "procedure_occurrence": ["procedure_occurrence_id", "person_id", "procedure_concept_id",
                             "procedure_date", "procedure_source_value"],
    "observation": ["observation_id", "person_id", "observation_concept_id", "observation_date",
                    "value_as_string", "value_as_concept_id", "observation_source_value"],
    "concept": ["concept_id", "concept_name", "domain_id", "vocabulary_id", "concept_class_id",
                "standard_concept", "concept_code", "valid_start_date", "valid_end_date",
                "invalid_reason"],
}  # fmt: skip


def test_omop_tables_have_the_cdm_columns_and_every_concept_is_listed(parquet: Path) -> None:
    tables = {name: pq.read_table(parquet / f"{name}.parquet") for name in SCHEMAS}
    for name, columns in CDM_COLUMNS.items():
        assert set(columns) <= set(tables[name].column_names), name
    concept = tables["concept"].to_pydict()
    listed = dict(zip(concept["concept_id"], concept["concept_code"], strict=True))
    assert min(listed) == FIRST_LOCAL_CONCEPT
    assert set(concept["vocabulary_id"]) <= {"LOINC", "SNOMED", "RxNorm", "ICD10CM", "ATC"}
    used = 0
    for name, table in tables.items():
        if name == "concept":
            continue
        for col in table.column_names:
            if not col.endswith("concept_id"):
                continue
            values = set(table.column(col).drop_null().to_pylist()) - {0}
            if col == "gender_concept_id":
                assert values == {MALE, FEMALE}
                continue
            assert values <= set(listed), (name, col, values - set(listed))
            used += len(values)
        source = next((c for c in table.column_names if c.endswith("_source_value")
                       and c.split("_")[0] in name and "unit" not in c), None)  # fmt: skip
        if source and name not in ("person", "care_site"):  # neither is coded by a concept
            main = f"{name.split('_')[0]}_concept_id"
            pairs = set(zip(table.column(main).to_pylist(), table.column(source).to_pylist(),
                            strict=True))  # fmt: skip
            assert all(listed[c] == code for c, code in pairs), name
    assert used > 20


def test_concepts_carry_the_knowledge_base_codes() -> None:
    from b12dx.fhir.codes import code_index

    index = code_index(KB)
    for entry in Concepts(KB).entries:
        uri = index.uri_by_system[entry.code.system]
        assert index.lookup(uri, entry.code.code) is not None, entry.key


def test_lab_units_are_a_mix_the_labs_accept(parquet: Path) -> None:
    units = pq.read_table(parquet / "measurement.parquet").column("unit_source_value")
    found = set(units.to_pylist())
    assert {"pg/mL", "ng/L", "pmol/L", "umol/L", "nmol/L"} == found
    accepted = {u.unit for lab in ("total_b12", "mma") for u in KB.labs[lab].units}
    assert found <= accepted


# -- command line -----------------------------------------------------------------------


def _cli(*args: str) -> Any:
    app = typer.Typer()
    synth_cli.register(app)
    app.command("noop")(lambda: None)  # two commands, so "synth" is named as on b12dx
    return CliRunner().invoke(app, ["synth", *args])


def test_cli_writes_the_population(tmp_path: Path) -> None:
    result = _cli("--patients", "50", "--out", str(tmp_path / "o"), "--format", "omop")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "person.csv").read_text().count("\n") == 51


def test_the_data_carries_the_date_it_was_made_for(tmp_path: Path) -> None:
    """b12dx-synth.json beside the data: what `b12dx screen` reads when not given --as-of."""
    args = ["--patients", "20", "--seed", "3", "--format", "ndjson", "--as-of", "2025-01-31"]
    assert _cli(*args, "--out", str(tmp_path / "o")).exit_code == 0
    manifest = json.loads((tmp_path / "o" / "b12dx-synth.json").read_text())
    assert manifest == {"as_of": "2025-01-31", "seed": 3, "patients": 20, "format": "ndjson"}
    assert made_for(tmp_path / "o") == dt.date(2025, 1, 31)
    assert made_for(tmp_path) is None


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--patients", "0"], "--patients"),
        (["--patients", "5", "--format", "xml"], "--format"),
        (["--patients", "5", "--as-of", "30/06/2026"], "--as-of"),
    ],
)
def test_cli_refuses_bad_options_naming_them(tmp_path: Path, args: list[str], option: str) -> None:
    result = _cli(*args, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert option in result.output


def test_cli_refuses_a_folder_that_is_not_empty_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    result = _cli("--patients", "5", "--out", str(tmp_path))
    assert result.exit_code == 2 and "--force" in result.output
    assert _cli("--patients", "5", "--out", str(tmp_path), "--force").exit_code == 0
