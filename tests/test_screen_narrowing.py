"""The gap rules give the same rows whether or not they first narrow a table to the
people they could flag (``facts.only``; DuckDB narrows, Spark does not, because Spark
copies the narrowing query's plan into every use). Checked on random small populations
made to trip a shortcut: null dates, duplicate rows, same-day doses by other routes,
orders ending before they start or begun after the date, several diagnoses with
treatment between them, results tied on a day, periods of nobody. Every gap is found in
them, so a narrowing that dropped a rule's rows would show.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import duckdb
import ibis
import pyarrow as pa
import pytest

from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.model import SCHEMAS
from b12dx.screen.rules import GAPS, build_gaps

KB = load_knowledge()
AS_OF = dt.date(2026, 2, 28)
MEDICINES = ["metformin", "folic_acid", "proton_pump_inhibitor", "h2_blocker", "b12_supplement"]
VALUES = [50.0, 132.8, 133.0, 150.0, 258.0, 258.23, 300.0, 25.0, 70.0]


def _day(rng: random.Random, back: int) -> dt.date | None:
    if rng.random() < 0.05:
        return None
    return AS_OF + dt.timedelta(days=rng.randint(-back, 30))


def _population(seed: int) -> dict[str, pa.Table]:
    rng = random.Random(seed)
    rows: dict[str, list[dict]] = {name: [] for name in SCHEMAS}
    symptoms, conditions = sorted(KB.symptoms), sorted(KB.conditions)
    for n in range(rng.randint(10, 40)):
        p = str(n)
        born = AS_OF - dt.timedelta(days=rng.randint(10 * 365, 90 * 365))
        dead = _day(rng, 400) if rng.random() < 0.1 else None
        rows["person"].append(
            dict(person_id=p, birth_date=born, sex="female", death_date=dead, care_site="A")
        )
        for _ in range(rng.choice([0, 1, 2, 4])):
            start = _day(rng, 1500)
            end = (
                None
                if rng.random() < 0.4 or start is None
                else start + dt.timedelta(days=rng.randint(-5, 500))
            )
            medicine = rng.choice(MEDICINES)
            rows["medication"].append(
                dict(person_id=p, medication_id=medicine, start_date=start, end_date=end)
            )
        back = rng.choice([30, 120, 400, 900])
        for _ in range(rng.choice([0, 1, 3, 6, 9])):
            route = rng.choice(["im", "im", "sc", "oral"])
            rows["b12_dose"].append(
                dict(person_id=p, date=_day(rng, back), route=route, drug="hydroxocobalamin")
            )
        for _ in range(rng.choice([0, 1, 2])):
            cid = rng.choice([*conditions, *["b12_deficiency"] * 4])
            end = _day(rng, 600) if rng.random() < 0.3 else None
            rows["condition"].append(
                dict(person_id=p, condition_id=cid, start_date=_day(rng, 900), end_date=end)
            )
        for _ in range(rng.choice([0, 1, 2, 3])):
            test = rng.choice(["total_b12", "total_b12", "active_b12", "mma"])
            value = None if rng.random() < 0.1 else rng.choice(VALUES)
            family = rng.choice(["mass", "molar"])
            rows["lab"].append(
                dict(person_id=p, test=test, value_si=value, value_text=None,
                     unit_family=family, date=_day(rng, 500))
            )  # fmt: skip
        for _ in range(rng.choice([0, 1, 2, 4])):
            kind = rng.choice(["symptom", "symptom", "diet", "exposure", "pregnancy"])
            fid = {"symptom": rng.choice(symptoms), "diet": "vegan"}.get(kind, "nitrous_oxide")
            rows["finding"].append(dict(person_id=p, kind=kind, id=fid, date=_day(rng, 400)))
        if rng.random() < 0.2:
            owner = None if rng.random() < 0.1 else p
            rows["observation_period"].append(
                dict(person_id=owner, start_date=_day(rng, 3000), end_date=None)
            )
    for name in ("b12_dose", "lab", "medication", "condition"):  # duplicates: ties
        rows[name] += [dict(r) for r in rows[name] if rng.random() < 0.1]
    return {name: pa.Table.from_pylist(r, schema=SCHEMAS[name]) for name, r in rows.items()}


@pytest.mark.parametrize("profile_id", ["nice-ng239", "bsh-2014"])
def test_narrowing_to_the_people_a_rule_could_flag_keeps_every_row(profile_id: str) -> None:
    profile = KB.profiles[profile_id]
    t = {
        name: ibis.table(ibis.Schema.from_pyarrow(schema), name=f"screen_{name}")
        for name, schema in SCHEMAS.items()
    }
    sql = {
        narrow: str(ibis.to_sql(build_gaps(t, KB, profile, AS_OF, narrow=narrow), "duckdb"))
        for narrow in (True, False)
    }
    found: Counter[str] = Counter()
    for seed in range(60):
        con = duckdb.connect()
        for name, table in _population(seed).items():
            con.register(f"screen_{name}", table)
        narrowed, whole = (
            con.execute(sql[n]).fetch_arrow_table().to_pylist() for n in (True, False)
        )
        assert sorted(map(str, narrowed)) == sorted(map(str, whole)), f"seed {seed}"
        found.update(r["gap"] for r in whole)
        con.close()
    assert set(found) == set(GAPS), found
