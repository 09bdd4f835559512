"""Lab units and input validation, through the public ``assess``.

Conversion factors are copied from clinical-reference.md §3, not read from labs.yaml, so
the test checks the knowledge base against the reference rather than against itself.
Every error is an ``InputError`` naming the field path and, where it helps, what is
accepted; nothing is guessed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from b12dx import InputError, assess
from b12dx.errors import FieldError
from b12dx.knowledge.loader import Knowledge, load_knowledge

AS_OF = dt.date(2026, 11, 21)

# clinical-reference.md §3 Units: SI unit of each test and the factor from each unit to it.
#   B12: 1 pg/mL = 1 ng/L = 0.7378 pmol/L
#   MMA: 1 ng/mL = 8.468 nmol/L = 0.008468 umol/L; 1 umol/L = 1000 nmol/L
#   Homocysteine: 1 mg/L = 7.398 umol/L
#   Folate: 1 ng/mL = 1 ug/L = 2.266 nmol/L
#   Haemoglobin: 1 g/dL = 10 g/L; MCV in fL; eGFR in mL/min/1.73m2
REFERENCE_SI_UNIT = {
    "total_b12": "pmol/L",
    "active_b12": "pmol/L",
    "mma": "umol/L",
    "homocysteine": "umol/L",
    "mcv": "fL",
    "hemoglobin": "g/L",
    "serum_folate": "nmol/L",
    "egfr": "mL/min/1.73m2",
}
REFERENCE_FACTOR: dict[tuple[str, str], float] = {
    ("total_b12", "pmol/L"): 1.0,
    ("total_b12", "pg/mL"): 0.7378,
    ("total_b12", "ng/L"): 0.7378,
    ("active_b12", "pmol/L"): 1.0,
    ("mma", "umol/L"): 1.0,
    ("mma", "nmol/L"): 0.001,
    ("mma", "ng/mL"): 0.008468,
    ("homocysteine", "umol/L"): 1.0,
    ("homocysteine", "mg/L"): 7.398,
    ("mcv", "fL"): 1.0,
    ("hemoglobin", "g/L"): 1.0,
    ("hemoglobin", "g/dL"): 10.0,
    ("serum_folate", "nmol/L"): 1.0,
    ("serum_folate", "ng/mL"): 2.266,
    ("serum_folate", "ug/L"): 2.266,
    ("egfr", "mL/min/1.73m2"): 1.0,
}
# A typical SI value per test, well inside the plausible range; each unit's test value is
# derived from it so every conversion is exercised at a clinically ordinary magnitude.
TYPICAL_SI = {
    "total_b12": 250.0,
    "active_b12": 45.0,
    "mma": 0.35,
    "homocysteine": 12.0,
    "mcv": 92.0,
    "hemoglobin": 128.0,
    "serum_folate": 15.0,
    "egfr": 75.0,
}

_KB = load_knowledge()
NUMERIC_UNITS = [
    (test.id, unit.unit)
    for test in _KB.labs.values()
    if test.kind == "numeric"
    for unit in test.units
]


def _record(**fields: Any) -> dict[str, Any]:
    return {"age_years": 50, "sex": "female", **fields}


def _lab(test: str, value: Any, unit: str | None = None, **extra: Any) -> dict[str, Any]:
    lab: dict[str, Any] = {"test": test, "value": value, **extra}
    if unit is not None:
        lab["unit"] = unit
    return lab


def _errors(record: dict[str, Any], as_of: dt.date | None = AS_OF) -> list[FieldError]:
    with pytest.raises(InputError) as caught:
        assess(record, as_of=as_of)
    assert caught.value.errors
    return caught.value.errors


def _only_error(record: dict[str, Any], path: str) -> FieldError:
    errors = _errors(record)
    at_path = [e for e in errors if e.path == path]
    assert at_path, f"no error at {path}: {errors}"
    return at_path[0]


# --- conversions ------------------------------------------------------------------------


def test_every_accepted_unit_has_a_reference_factor() -> None:
    assert NUMERIC_UNITS
    unknown = [tu for tu in NUMERIC_UNITS if tu not in REFERENCE_FACTOR]
    assert not unknown, f"units in labs.yaml without a factor in the clinical reference: {unknown}"


def test_every_reference_unit_is_accepted() -> None:
    missing = [tu for tu in REFERENCE_FACTOR if tu not in NUMERIC_UNITS]
    assert not missing, f"units in the clinical reference that labs.yaml refuses: {missing}"


@pytest.mark.parametrize(("test_id", "unit"), NUMERIC_UNITS)
def test_result_converts_to_the_si_value_of_the_clinical_reference(
    kb: Knowledge, test_id: str, unit: str
) -> None:
    factor = REFERENCE_FACTOR[(test_id, unit)]
    value = round(TYPICAL_SI[test_id] / factor, 4)
    a = assess(_record(labs=[_lab(test_id, value, unit, date="2026-11-01")]), as_of=AS_OF)
    (item,) = a.labs
    assert item.test == test_id
    assert item.value == value
    assert item.unit_si == REFERENCE_SI_UNIT[test_id]
    assert item.value_si is not None
    # value_si is rounded to the test's SI decimals; allow half a unit in the last place.
    tolerance = 0.5 * 10 ** -kb.labs[test_id].si_decimals + 1e-9
    assert item.value_si == pytest.approx(value * factor, abs=tolerance)


@pytest.mark.parametrize(
    ("test_id", "value", "unit", "expected_si"),
    [
        ("total_b12", 180, "ng/L", 132.8),  # clinical-reference §3: 180 ng/L = 132.8 pmol/L
        ("total_b12", 350, "pg/mL", 258.2),  # 350 = 258.2
        ("mma", 118.1, "ng/mL", 1.0),  # 1 umol/L = 118.1 ng/mL
        ("mma", 400, "nmol/L", 0.4),  # stabler-2013: normal < 400 nmol/L
        ("serum_folate", 3, "ug/L", 6.8),  # 3 ug/L is about 7 nmol/L (bsh-2014)
        ("hemoglobin", 12.5, "g/dL", 125),
        ("homocysteine", 2, "mg/L", 14.8),
    ],
)
def test_worked_conversions_of_the_clinical_reference(
    test_id: str, value: float, unit: str, expected_si: float
) -> None:
    a = assess(_record(labs=[_lab(test_id, value, unit)]), as_of=AS_OF)
    assert a.labs[0].value_si == pytest.approx(expected_si, abs=0.051)


@pytest.mark.parametrize(
    ("test_id", "value", "unit", "expected_si"),
    [
        ("mma", 0.52, "µmol/L", 0.52),  # micro sign U+00B5
        ("mma", 0.52, "μmol/L", 0.52),  # Greek mu U+03BC
        ("mma", 0.52, "UMOL/L", 0.52),
        ("homocysteine", 20, "µmol/L", 20.0),
        ("total_b12", 150, "pg/ml", 110.7),
        ("total_b12", 150, " ng / L ", 110.7),
        ("total_b12", 150, "PMOL/L", 150.0),
        ("serum_folate", 3, "µg/L", 6.8),
        ("hemoglobin", 12, "g/dl", 120),
        ("egfr", 45, "mL/min/1.73 m2", 45),
    ],
)
def test_unit_spellings_are_accepted(
    test_id: str, value: float, unit: str, expected_si: float
) -> None:
    a = assess(_record(labs=[_lab(test_id, value, unit)]), as_of=AS_OF)
    assert a.labs[0].value_si == pytest.approx(expected_si, abs=0.051)
    assert a.labs[0].unit_si == REFERENCE_SI_UNIT[test_id]


def test_b12_150_pg_per_ml_is_deficient_but_150_pmol_per_l_is_indeterminate() -> None:
    # clinical-reference §3 pitfall: the same number means different things in each unit.
    in_mass = assess(_record(labs=[_lab("total_b12", 150, "pg/mL")]), as_of=AS_OF)
    in_molar = assess(_record(labs=[_lab("total_b12", 150, "pmol/L")]), as_of=AS_OF)
    assert in_mass.labs[0].band == "deficient"
    assert in_molar.labs[0].band == "indeterminate"
    assert in_mass.deficiency_status == "confirmed"
    assert in_molar.deficiency_status == "indeterminate"


# --- wrong or missing units -----------------------------------------------------------------


def _assert_lists_units(error: FieldError, test_id: str) -> None:
    assert error.accepted is not None
    for unit in _KB.labs[test_id].units:
        assert unit.unit in error.accepted


@pytest.mark.parametrize("test_id", [t.id for t in _KB.labs.values() if t.kind == "numeric"])
def test_missing_unit_is_rejected_and_lists_the_tests_units(test_id: str) -> None:
    error = _only_error(_record(labs=[_lab(test_id, 50)]), "labs[0].unit")
    _assert_lists_units(error, test_id)


@pytest.mark.parametrize("unit", ["", "   "])
def test_empty_unit_is_rejected_and_lists_the_tests_units(unit: str) -> None:
    error = _only_error(_record(labs=[_lab("total_b12", 300, unit)]), "labs[0].unit")
    _assert_lists_units(error, "total_b12")


@pytest.mark.parametrize(
    ("test_id", "value", "unit"),
    [
        ("total_b12", 300, "g/dL"),
        ("total_b12", 300, "nmol/L"),
        ("mma", 0.3, "pg/mL"),
        ("mma", 0.3, "mg/L"),
        ("homocysteine", 12, "pmol/L"),
        ("hemoglobin", 12, "fL"),
        ("serum_folate", 10, "pmol/L"),
        ("active_b12", 45, "pg/mL"),
        ("mcv", 90, "g/L"),
        ("egfr", 60, "mL/min"),
        ("total_b12", 300, "furlongs"),
    ],
)
def test_unit_of_another_test_is_rejected_and_lists_the_tests_units(
    test_id: str, value: float, unit: str
) -> None:
    error = _only_error(_record(labs=[_lab(test_id, value, unit)]), "labs[0].unit")
    _assert_lists_units(error, test_id)


def test_a_unit_on_intrinsic_factor_antibody_is_rejected() -> None:
    _only_error(
        _record(labs=[_lab("intrinsic_factor_antibody", "positive", "U/mL")]), "labs[0].unit"
    )


# --- impossible values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test_id", "value", "unit"),
    [
        ("total_b12", -5, "pg/mL"),
        ("total_b12", 0, "pg/mL"),
        ("total_b12", 0, "pmol/L"),
        ("hemoglobin", 900, "g/L"),
        ("hemoglobin", -1, "g/dL"),
        ("mma", -0.2, "umol/L"),
        ("mcv", 0, "fL"),
        ("egfr", 500, "mL/min/1.73m2"),
    ],
)
def test_impossible_value_is_rejected_at_the_value(test_id: str, value: float, unit: str) -> None:
    error = _only_error(_record(labs=[_lab(test_id, value, unit)]), "labs[0].value")
    assert error.accepted, "the error should say what range is possible"


def test_string_value_for_a_numeric_test_is_rejected() -> None:
    _only_error(_record(labs=[_lab("total_b12", "150", "pg/mL")]), "labs[0].value")


def test_boolean_value_for_a_numeric_test_is_rejected() -> None:
    errors = _errors(_record(labs=[_lab("total_b12", True, "pg/mL")]))
    assert any(e.path.startswith("labs[0].value") for e in errors), errors


def test_number_for_intrinsic_factor_antibody_is_rejected() -> None:
    error = _only_error(_record(labs=[_lab("intrinsic_factor_antibody", 1)]), "labs[0].value")
    assert error.accepted is not None
    assert "positive" in error.accepted
    assert "negative" in error.accepted


def test_unknown_intrinsic_factor_antibody_result_is_rejected() -> None:
    _only_error(_record(labs=[_lab("intrinsic_factor_antibody", "borderline")]), "labs[0].value")


def test_unknown_lab_test_is_rejected_and_lists_the_tests() -> None:
    error = _only_error(_record(labs=[_lab("vitamin_d", 50, "nmol/L")]), "labs[0].test")
    assert error.accepted is not None
    assert "total_b12" in error.accepted
    assert "mma" in error.accepted


# --- dates after as_of ----------------------------------------------------------------------


def test_lab_date_after_as_of_is_rejected() -> None:
    _only_error(_record(labs=[_lab("total_b12", 300, "pg/mL", date="2026-11-22")]), "labs[0].date")


def test_lab_date_on_as_of_is_accepted() -> None:
    a = assess(_record(labs=[_lab("total_b12", 300, "pg/mL", date="2026-11-21")]), as_of=AS_OF)
    assert a.labs[0].band == "indeterminate"


def test_treatment_date_after_as_of_is_rejected() -> None:
    dose = {"date": "2026-12-01", "drug": "hydroxocobalamin", "route": "im", "dose_mg": 1}
    _only_error(_record(b12_treatment=[dose]), "b12_treatment[0].date")


def test_second_treatment_date_after_as_of_is_rejected_at_its_index() -> None:
    doses = [
        {"date": "2026-11-10", "drug": "hydroxocobalamin", "route": "im", "dose_mg": 1},
        {"date": "2027-01-01", "drug": "hydroxocobalamin", "route": "im", "dose_mg": 1},
    ]
    _only_error(_record(b12_treatment=doses), "b12_treatment[1].date")


def test_symptom_rating_date_after_as_of_is_rejected() -> None:
    rating = {"id": "numbness", "date": "2026-11-22", "rating": "mild"}
    error = _only_error(_record(symptom_ratings=[rating]), "symptom_ratings[0].date")
    assert "after as_of 2026-11-21" in error.message


def test_symptom_rating_on_as_of_is_accepted() -> None:
    rating = {"id": "numbness", "date": "2026-11-21", "rating": "mild"}
    assess(_record(symptom_ratings=[rating]), as_of=AS_OF)


def test_record_as_of_is_used_when_the_argument_is_missing() -> None:
    record = _record(as_of="2026-11-21", labs=[_lab("total_b12", 300, "pg/mL", date="2026-11-22")])
    errors = _errors(record, as_of=None)
    assert [e.path for e in errors] == ["labs[0].date"]


# --- ids, fields and the record as a whole ------------------------------------------------


def test_unknown_symptom_id_is_rejected_and_lists_accepted_ids(kb: Knowledge) -> None:
    error = _only_error(_record(symptoms=[{"id": "achy_everything"}]), "symptoms[0].id")
    assert error.accepted is not None
    for symptom_id in kb.symptoms:
        assert symptom_id in error.accepted


def test_unknown_symptom_rating_id_is_rejected_and_lists_accepted_ids(kb: Knowledge) -> None:
    ratings = [
        {"id": "numbness", "date": "2026-10-01", "rating": "moderate"},
        {"id": "achy_everything", "date": "2026-10-01", "rating": "mild"},
    ]
    error = _only_error(_record(symptom_ratings=ratings), "symptom_ratings[1].id")
    assert "achy_everything" in error.message
    assert error.accepted is not None
    for symptom_id in kb.symptoms:
        assert symptom_id in error.accepted


def test_unknown_rating_is_rejected_and_lists_the_ratings() -> None:
    rating = {"id": "numbness", "date": "2026-10-01", "rating": "terrible"}
    error = _only_error(_record(symptom_ratings=[rating]), "symptom_ratings[0].rating")
    for word in ("none", "mild", "moderate", "severe"):
        assert word in error.message


def test_a_symptom_rated_twice_on_one_date_is_rejected_at_the_second() -> None:
    ratings = [
        {"id": "numbness", "date": "2026-10-01", "rating": "moderate"},
        {"id": "numbness", "date": "2026-10-01", "rating": "mild"},
    ]
    error = _only_error(_record(symptom_ratings=ratings), "symptom_ratings[1].date")
    assert "symptom_ratings[0]" in error.message


def test_unknown_field_in_a_symptom_rating_lists_its_fields() -> None:
    rating = {"id": "numbness", "date": "2026-10-01", "rating": "mild", "score": 3}
    error = _only_error(_record(symptom_ratings=[rating]), "symptom_ratings[0].score")
    assert error.accepted == "id, date, rating"


@pytest.mark.parametrize("field", ["conditions", "medications", "exposures"])
def test_unknown_condition_medication_or_exposure_id_is_rejected(field: str) -> None:
    error = _only_error(_record(**{field: [{"id": "not_a_real_id"}]}), f"{field}[0].id")
    assert error.accepted


def test_unknown_top_level_field_is_rejected() -> None:
    error = _only_error(_record(favourite_colour="blue"), "favourite_colour")
    assert error.accepted is not None
    assert "age_years" in error.accepted


def test_unknown_nested_field_is_rejected() -> None:
    _only_error(_record(symptoms=[{"id": "paresthesia", "colour": "red"}]), "symptoms[0].colour")


def test_missing_as_of_is_rejected_at_as_of() -> None:
    errors = _errors(_record(), as_of=None)
    assert [e.path for e in errors] == ["as_of"]


def test_missing_age_is_rejected_at_age_years() -> None:
    errors = _errors({"sex": "female"})
    assert "age_years" in [e.path for e in errors]


def test_male_and_pregnant_is_rejected() -> None:
    _only_error(_record(sex="male", pregnant=True), "pregnant")


def test_every_error_is_reported_at_once() -> None:
    record = _record(
        symptoms=[{"id": "nope"}],
        labs=[_lab("total_b12", 150), _lab("mma", 0.3, "umol/L", date="2027-01-01")],
    )
    paths = {e.path for e in _errors(record)}
    assert {"symptoms[0].id", "labs[0].unit", "labs[1].date"} <= paths
