"""One rounding rule for every number computed from a result (b12dx.numbers): the engine
(``value_si``, the lab text, the terminal report), DuckDB and Spark (the screening gaps'
reasons) write the same digits for the same result, half-way cases included, in every
unit of every test.

The expected value is computed here independently, in exact decimal arithmetic: the
recorded value times the knowledge base's factor, rounded half up to the test's
``si_decimals``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from b12dx import assess
from b12dx.cli.app import app
from b12dx.engine.units import family_base
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.knowledge import LabTest, LabUnit
from b12dx.numbers import format_si, format_si_expr, round_si
from b12dx.screen.model import rows_table, write_tables
from b12dx.screen.run import screen_tables

KB = load_knowledge()
AS_OF = dt.date(2026, 6, 30)
TAKEN = AS_OF - dt.timedelta(days=100)  # past both follow-up windows (91 and 31 days)


def exact(recorded: Decimal, unit: LabUnit, decimals: int) -> Decimal:
    product = recorded * Decimal(repr(unit.factor))
    return product.quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)


def plain(d: Decimal) -> str:
    text = f"{d:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def is_half_way(recorded: Decimal, unit: LabUnit, decimals: int) -> bool:
    """The exact SI value ends in a 5 one place past what is shown (184.45 at 1 place)."""
    scaled = recorded * Decimal(repr(unit.factor)) * Decimal(10) ** (decimals + 1)
    return scaled == scaled.to_integral_value() and int(scaled) % 10 == 5


def anchors(test: LabTest, unit: LabUnit) -> list[Decimal]:
    """Where results matter, in ``unit``: the bottom of the plausible range and every
    cut-off of every profile for this test."""
    points = [test.plausible_si[0] / unit.factor]
    for profile in KB.profiles.values():
        for rule in profile.bands.get(test.id, []):
            family = rule.when.unit_family
            if family is not None and family != unit.family:
                continue
            to_si = family_base(test, family).factor if family else 1.0
            for cut in rule.cutoffs:
                bound = cut.below if cut.below is not None else cut.upto
                assert bound is not None
                points.append(bound * to_si / unit.factor)
    return sorted({Decimal(repr(round(p, 6))) for p in points})


def recorded_values(test: LabTest, unit: LabUnit) -> list[Decimal]:
    """Values a laboratory could report in ``unit``: from each anchor upward, whole
    numbers and then 1, 2 and (one more than the SI shows) places of decimals."""
    places = sorted({0, 1, 2, test.si_decimals + 1})
    values = set()
    for start in anchors(test, unit):
        for p in places:
            step = Decimal(1).scaleb(-p)
            first = start.quantize(step, ROUND_HALF_UP)
            values.update(first + k * step for k in range(300))
    low, high = (Decimal(repr(b / unit.factor)) for b in test.plausible_si)
    return sorted(v for v in values if low <= v <= high)


UNITS = [(test, unit) for test in KB.labs.values() if test.kind == "numeric" for unit in test.units]


def every_case() -> Iterator[tuple[LabTest, LabUnit, Decimal]]:
    for test, unit in UNITS:
        for r in recorded_values(test, unit):
            yield test, unit, r


def test_the_rule_is_exact_decimal_rounding_half_up_in_every_unit() -> None:
    half_way: dict[tuple[str, str], int] = {}
    for test, unit, r in every_case():
        want = exact(r, unit, test.si_decimals)
        got = round_si(float(r) * unit.factor, test.si_decimals)
        assert got == want, (test.id, unit.unit, r)
        assert format_si(float(r) * unit.factor, test.si_decimals) == plain(want)
        if is_half_way(r, unit, test.si_decimals):
            half_way[(test.id, unit.unit)] = half_way.get((test.id, unit.unit), 0) + 1
    # Every unit of every test met half-way cases (250 pg/mL is 184.45 pmol/L exactly).
    assert set(half_way) == {(test.id, unit.unit) for test, unit in UNITS}


def test_250_pg_ml_is_184_5_pmol_l_not_the_binary_184_4() -> None:
    value = 250 * 0.7378  # the float is 184.4499...: round() alone gives 184.4
    assert round(value, 1) == 184.4
    assert format_si(value, 1) == "184.5"
    assert format_si(184.0, 1) == "184"
    assert format_si(0.35, 3) == "0.35"
    assert format_si(1234567.0, 0) == "1234567"  # positional, never an exponent


@pytest.fixture(scope="module")
def sweep() -> pa.Table:
    rows = [
        (float(r) * unit.factor, test.si_decimals, plain(exact(r, unit, test.si_decimals)))
        for test, unit, r in every_case()
    ]
    return pa.table(
        {
            "value": [v for v, _, _ in rows],
            "decimals": [d for _, d, _ in rows],
            "want": [w for _, _, w in rows],
        }
    )


def _sql_digits(con: Any, sweep: pa.Table) -> None:
    t = ibis.memtable(sweep)
    for decimals in sorted(set(sweep.column("decimals").to_pylist())):
        part = t.filter(t.decimals == decimals)
        out = con.to_pyarrow(part.select(part.want, got=format_si_expr(part.value, decimals)))
        got, want = out.column("got").to_pylist(), out.column("want").to_pylist()
        wrong = [(g, w) for g, w in zip(got, want, strict=True) if g != w]
        assert not wrong, f"{len(wrong)} of {len(got)} differ at {decimals} decimals: {wrong[:5]}"


def test_duckdb_writes_the_same_digits_as_exact_rounding(sweep: pa.Table) -> None:
    _sql_digits(ibis.duckdb.connect(), sweep)


@pytest.mark.slow
def test_spark_writes_the_same_digits_as_exact_rounding(spark: Any, sweep: pa.Table) -> None:
    _sql_digits(ibis.pyspark.connect(spark), sweep)


# -- end to end: one result, the engine and both screening backends ---------------------


def _half_way_results() -> list[tuple[str, LabUnit, Decimal, str]]:
    """For each B12 test and unit, a half-way result in the indeterminate band and one in
    the deficient band (the two gaps whose reasons quote the result)."""
    cases = []
    for test_id in KB.screening.b12_tests:
        test = KB.labs[test_id]
        for unit in test.units:
            for band in ("indeterminate", "deficient"):
                for r in recorded_values(test, unit):
                    if r <= 0 or not is_half_way(r, unit, test.si_decimals):
                        continue
                    lab = {"test": test_id, "value": float(r), "unit": unit.unit}
                    got = assess({"age_years": 60, "labs": [lab]}, as_of=AS_OF).labs[0]
                    if got.band == band:
                        cases.append((test_id, unit, r, band))
                        break
    return cases


CASES = _half_way_results()


def test_every_b12_unit_and_band_has_half_way_cases() -> None:
    # Whole ng/L values are half-way only from 250 up (250 x 0.7378 = 184.45), all of
    # them above the deficient band, so each unit has a case and each band has a case.
    for test_id in KB.screening.b12_tests:
        units = {u.unit for t, u, _, _ in CASES if t == test_id}
        bands = {band for t, _, _, band in CASES if t == test_id}
        assert units == {u.unit for u in KB.labs[test_id].units}
        assert bands == {"indeterminate", "deficient"}


def _screened_numbers(tmp_path: Path, engine: str) -> dict[str, str]:
    people, labs = [], []
    for i, (test_id, unit, r, _) in enumerate(CASES):
        pid = f"p{i}"
        people.append(
            {"person_id": pid, "birth_date": dt.date(1960, 1, 1), "sex": "male", "death_date": None}
        )
        labs.append(
            {
                "person_id": pid,
                "test": test_id,
                "value_si": float(r) * unit.factor,
                "value_text": None,
                "unit_family": unit.family,
                "date": TAKEN,
            }
        )
    tables = write_tables(
        tmp_path, {"person": rows_table("person", people), "lab": rows_table("lab", labs)}
    )
    result = screen_tables(tables, KB, KB.default_profile, AS_OF, engine=engine)
    numbers = {}
    for row in result.gaps.to_pylist():
        found = re.search(r" (\d+(?:\.\d+)?) pmol/L on ", row["reasons"])
        assert found, row["reasons"]
        numbers[row["person_id"]] = found.group(1)
    assert set(numbers) == {f"p{i}" for i in range(len(CASES))}  # every case was flagged
    return numbers


def _engine_numbers() -> dict[str, str]:
    out = {}
    for i, (test_id, unit, r, _) in enumerate(CASES):
        lab = {"test": test_id, "value": float(r), "unit": unit.unit, "date": str(TAKEN)}
        item = assess({"age_years": 60, "labs": [lab]}, as_of=AS_OF).labs[0]
        want = exact(r, unit, KB.labs[test_id].si_decimals)
        assert item.value_si is not None
        assert Decimal(repr(item.value_si)) == want, (test_id, unit.unit, r)
        if unit.unit != item.unit_si:  # the text shows the SI value beside the recorded one
            assert f"({plain(want)} {item.unit_si})" in item.text
        out[f"p{i}"] = plain(want)
    return out


def test_duckdb_screening_quotes_the_engines_si_value(tmp_path: Path) -> None:
    assert _screened_numbers(tmp_path, "duckdb") == _engine_numbers()


@pytest.mark.slow
def test_spark_screening_quotes_the_engines_si_value(spark: Any, tmp_path: Path) -> None:
    assert _screened_numbers(tmp_path, "spark") == _engine_numbers()


def test_the_terminal_report_and_json_of_b12dx_assess_show_the_same_digits(
    tmp_path: Path,
) -> None:
    record = {
        "age_years": 60,
        "as_of": str(AS_OF),
        "labs": [{"test": "total_b12", "value": 250, "unit": "pg/mL", "date": str(TAKEN)}],
    }
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    runner = CliRunner()
    as_json = runner.invoke(app, ["assess", str(path), "--json"])
    assert as_json.exit_code == 0, as_json.output
    lab = json.loads(as_json.stdout)["labs"][0]
    assert lab["value_si"] == 184.5
    assert "250 pg/mL (184.5 pmol/L)" in lab["text"]
    report = runner.invoke(app, ["assess", str(path)], env={"COLUMNS": "200"})
    assert report.exit_code == 0, report.output
    assert "184.5 pmol/L" in report.stdout
    assert "184.4" not in report.stdout
