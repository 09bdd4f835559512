"""The shipped knowledge base: it loads, it is consistent, it holds every id the contract
(../shared/contract.md) fixes, and a corrupted copy is refused at load.

The id lists below are copied from the contract on purpose: the contract is the fixed point
the knowledge base must meet, so the test does not read them back from the data it checks.
"""

from __future__ import annotations

import shutil
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from b12dx.errors import KnowledgeError
from b12dx.knowledge.consistency import check
from b12dx.knowledge.loader import DATA_DIR, Knowledge, load_knowledge_from
from b12dx.models import assessment
from contract_values import (
    CONTRACT_BANDS_BY_TEST,
    CONTRACT_CONDITIONS,
    CONTRACT_DEFICIENCY_STATUSES,
    CONTRACT_DURATIONS,
    CONTRACT_EXPOSURES,
    CONTRACT_FITS,
    CONTRACT_LAB_TESTS,
    CONTRACT_MEDICATIONS,
    CONTRACT_MILESTONES,
    CONTRACT_NEXT_STEPS,
    CONTRACT_PROFILES,
    CONTRACT_REGIMENS,
    CONTRACT_SUSPICION_LEVELS,
    CONTRACT_SYMPTOMS,
    CONTRACT_URGENCY,
    CONTRACT_WARNING_SEVERITIES,
    CONTRACT_WARNINGS,
)

# --- the contract's fixed lists: tests/contract_values.py ---------------------------------

DEFAULT_PROFILE = "nice-ng239"

# clinical-reference.md, the citation table at the top.
REFERENCE_SOURCE_IDS = [
    "seed-weakness", "seed-atrophy", "seed-leg-weakness", "seed-achy-legs", "seed-neuro",
    "nice-ng239", "bsh-2014", "cks", "bnf-hydroxocobalamin", "fda-cyanocobalamin",
    "mhra-2022-metformin", "ada-soc", "lam-2013", "ods-b12", "oh-brown-2003", "savage-1994",
    "stabler-2013", "vasconcelos-2006", "savage-lindenbaum-1995",
]  # fmt: skip

# clinical-reference.md §3, Codes: the LOINC codes it gives as known.
REFERENCE_LOINC = [
    ("total_b12", "2132-9"),
    ("total_b12", "14685-2"),
    ("mma", "13964-2"),
    ("homocysteine", "13965-9"),
    ("homocysteine", "2428-1"),
    ("serum_folate", "2284-8"),
    ("mcv", "787-2"),
    ("hemoglobin", "718-7"),
]

# clinical-reference.md §3, Codes: ATC codes (pregabalin has a current and a former code).
REFERENCE_ATC = [
    ("medications", "metformin", "A10BA02"),
    ("medications", "proton_pump_inhibitor", "A02BC"),
    ("medications", "h2_blocker", "A02BA"),
    ("medications", "colchicine", "M04AC01"),
    ("medications", "phenobarbital", "N03AA02"),
    ("medications", "primidone", "N03AA03"),
    ("medications", "pregabalin", "N02BF02"),
    ("medications", "pregabalin", "N03AX16"),
    ("medications", "topiramate", "N03AX11"),
    ("medications", "folic_acid", "B03BB01"),
    ("exposures", "nitrous_oxide", "N01AX13"),
]


# --- the shipped knowledge base -------------------------------------------------------------


def test_shipped_knowledge_base_loads_and_check_finds_nothing(kb: Knowledge) -> None:
    assert list(check(kb)) == []


def test_shipped_data_dir_loads_from_path() -> None:
    assert load_knowledge_from(DATA_DIR).version


def test_knowledge_version_is_set(kb: Knowledge) -> None:
    assert isinstance(kb.version, str)
    assert kb.version.strip()
    assert kb.version != "None"


@pytest.mark.parametrize("profile_id", CONTRACT_PROFILES)
def test_every_contract_profile_exists(kb: Knowledge, profile_id: str) -> None:
    assert profile_id in kb.profiles
    assert kb.profile(profile_id).id == profile_id


def test_default_profile_is_nice_ng239(kb: Knowledge) -> None:
    assert kb.default_profile.id == DEFAULT_PROFILE
    assert kb.profile(None).id == DEFAULT_PROFILE
    assert [p.id for p in kb.profiles.values() if p.default] == [DEFAULT_PROFILE]


def test_every_rule_has_known_sources(kb: Knowledge) -> None:
    assert kb.rules
    for rule in kb.rules.values():
        assert rule.sources, f"rule {rule.id} has no source"
        unknown = [s for s in rule.sources if s not in kb.sources]
        assert not unknown, f"rule {rule.id} cites unknown {unknown}"


@pytest.mark.parametrize("source_id", REFERENCE_SOURCE_IDS)
def test_every_clinical_reference_source_is_registered(kb: Knowledge, source_id: str) -> None:
    assert source_id in kb.sources
    source = kb.sources[source_id]
    assert source.title.strip()
    assert source.statement.strip()


def _ids(kb: Knowledge, topic: str) -> set[str]:
    return set(kb.topics()[topic])


# (topic in Knowledge.topics(), the contract's list, whether the contract closes the set).
# Symptom ids are "fixed" by the contract; the "Fixed values" section closes next steps,
# warnings, regimens, milestones and urgency; labs[].test lists every test the bands cover.
# Conditions, medications and exposures are listed but may grow (fields may be added).
CONTRACT_ID_SETS: list[tuple[str, list[str], bool]] = [
    ("symptoms", CONTRACT_SYMPTOMS, True),
    ("conditions", CONTRACT_CONDITIONS, False),
    ("medications", CONTRACT_MEDICATIONS, False),
    ("exposures", CONTRACT_EXPOSURES, False),
    ("labs", CONTRACT_LAB_TESTS, True),
    ("next_steps", CONTRACT_NEXT_STEPS, True),
    ("warnings", CONTRACT_WARNINGS, True),
    ("regimens", CONTRACT_REGIMENS, True),
    ("milestones", CONTRACT_MILESTONES, True),
    ("urgency", CONTRACT_URGENCY, True),
]


@pytest.mark.parametrize(
    ("topic", "contract_ids", "closed"), CONTRACT_ID_SETS, ids=[t for t, _, _ in CONTRACT_ID_SETS]
)
def test_every_contract_id_exists_in_the_knowledge_base(
    kb: Knowledge, topic: str, contract_ids: list[str], closed: bool
) -> None:
    missing = [i for i in contract_ids if i not in _ids(kb, topic)]
    assert not missing, f"{topic}: contract ids missing from the knowledge base: {missing}"


@pytest.mark.parametrize(
    ("topic", "contract_ids"),
    [(t, ids) for t, ids, closed in CONTRACT_ID_SETS if closed],
    ids=[t for t, _, closed in CONTRACT_ID_SETS if closed],
)
def test_knowledge_base_holds_no_ids_beyond_a_fixed_contract_set(
    kb: Knowledge, topic: str, contract_ids: list[str]
) -> None:
    extra = sorted(_ids(kb, topic) - set(contract_ids))
    assert not extra, f"{topic}: ids not in the contract: {extra}"


def test_contract_ids_are_listed_once() -> None:
    for topic, contract_ids, _ in CONTRACT_ID_SETS:
        assert len(contract_ids) == len(set(contract_ids)), topic


def test_urgency_levels_are_ordered_as_in_the_contract(kb: Knowledge) -> None:
    ordered = sorted(kb.urgency.values(), key=lambda u: u.order)
    assert [u.id for u in ordered] == CONTRACT_URGENCY


def test_warning_severities_are_contract_values(kb: Knowledge) -> None:
    for warning in kb.warnings.values():
        assert warning.severity in CONTRACT_WARNING_SEVERITIES


# The output models' literal types must say exactly what the contract fixes, so the
# generated JSON Schema publishes the contract's enums.
MODEL_LITERALS: list[tuple[str, Any, list[str]]] = [
    ("NextStepId", assessment.NextStepId, CONTRACT_NEXT_STEPS),
    ("WarningId", assessment.WarningId, CONTRACT_WARNINGS),
    ("Severity", assessment.Severity, CONTRACT_WARNING_SEVERITIES),
    ("RegimenId", assessment.RegimenId, CONTRACT_REGIMENS),
    ("MilestoneId", assessment.MilestoneId, CONTRACT_MILESTONES),
    ("Urgency", assessment.Urgency, CONTRACT_URGENCY),
    ("SuspicionLevel", assessment.SuspicionLevel, CONTRACT_SUSPICION_LEVELS),
    ("DeficiencyStatus", assessment.DeficiencyStatus, CONTRACT_DEFICIENCY_STATUSES),
    ("TreatmentDuration", assessment.TreatmentDuration, CONTRACT_DURATIONS),
    ("Fit", assessment.Fit, CONTRACT_FITS),
    ("Band", assessment.Band, sorted(set().union(*CONTRACT_BANDS_BY_TEST.values()))),
]


@pytest.mark.parametrize(
    ("name", "literal", "contract_values"), MODEL_LITERALS, ids=[n for n, _, _ in MODEL_LITERALS]
)
def test_output_model_literals_match_the_contract(
    name: str, literal: Any, contract_values: list[str]
) -> None:
    assert set(typing.get_args(literal)) == set(contract_values)


@pytest.mark.parametrize("profile_id", CONTRACT_PROFILES)
def test_every_profile_band_is_one_the_contract_allows_for_its_test(
    kb: Knowledge, profile_id: str
) -> None:
    profile = kb.profiles[profile_id]
    for test_id, rules in profile.bands.items():
        allowed = CONTRACT_BANDS_BY_TEST[test_id]
        for band_rule in rules:
            named = {c.band for c in band_rule.cutoffs} | {band_rule.otherwise}
            assert named <= allowed, f"{profile_id} {test_id}: {sorted(named - allowed)}"


def test_qualitative_intrinsic_factor_antibody_accepts_positive_and_negative(
    kb: Knowledge,
) -> None:
    test = kb.labs["intrinsic_factor_antibody"]
    assert test.kind == "qualitative"
    assert sorted(test.values) == ["negative", "positive"]


def test_every_numeric_lab_has_units_an_si_unit_and_a_plausible_range(kb: Knowledge) -> None:
    for test in kb.labs.values():
        if test.kind != "numeric":
            continue
        assert test.units, test.id
        assert test.si_unit in {u.unit for u in test.units}, test.id
        assert test.plausible_si is not None, test.id
        low, high = test.plausible_si
        assert 0 < low < high, test.id


# --- codes ------------------------------------------------------------------------------------


def _coded_entries(kb: Knowledge) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for topic in ("conditions", "medications", "exposures", "labs"):
        for key, entry in kb.topics()[topic].items():
            out.append((f"{topic}.{key}", entry))
    return out


def test_every_code_entry_has_a_system_and_a_code(kb: Knowledge) -> None:
    seen = 0
    for where, entry in _coded_entries(kb):
        for code in entry.codes:
            seen += 1
            assert code.system.strip(), where
            assert isinstance(code.code, str), where
            assert code.code.strip(), where
            assert code.display.strip(), where
            assert isinstance(code.verified, bool), where
    assert seen > 0


@pytest.mark.parametrize("test_id", ["active_b12", "intrinsic_factor_antibody"])
def test_unverified_codes_are_marked_for_holotranscobalamin_and_intrinsic_factor_antibody(
    kb: Knowledge, test_id: str
) -> None:
    # clinical-reference.md did not verify these codes: the knowledge base either says
    # where each was checked or marks it unverified.
    codes = kb.labs[test_id].codes
    assert codes, f"{test_id} has no code"
    for c in codes:
        assert c.verified is False or (c.note and "Checked against" in c.note), c


@pytest.mark.parametrize(("test_id", "code"), REFERENCE_LOINC)
def test_reference_loinc_codes_are_recorded(kb: Knowledge, test_id: str, code: str) -> None:
    # Whether each is verified is for tests/test_codes.py, against a named source: the
    # reference's list is not one (it gave 15152-2, conjugated bilirubin, as red cell
    # folate).
    match = [c for c in kb.labs[test_id].codes if c.system == "LOINC" and c.code == code]
    assert match, f"{test_id}: LOINC {code} missing"


@pytest.mark.parametrize(("topic", "entry_id", "code"), REFERENCE_ATC)
def test_reference_atc_codes_are_recorded(
    kb: Knowledge, topic: str, entry_id: str, code: str
) -> None:
    entry: Any = kb.topics()[topic][entry_id]
    assert any(c.system == "ATC" and c.code == code for c in entry.codes)


# --- a corrupted copy is refused at load ---------------------------------------------------


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA_DIR, target)
    return target


def _mutate(directory: Path, name: str, change: Callable[[Any], Any]) -> None:
    """Load ``name``.yaml, apply ``change`` (in place, or returning a replacement), save."""
    path = directory / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    changed = change(data)
    if changed is not None:
        data = changed
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _by_id(entries: list[dict[str, Any]], entry_id: str) -> dict[str, Any]:
    return next(e for e in entries if e["id"] == entry_id)


def test_a_copy_rewritten_unchanged_still_loads(data_copy: Path) -> None:
    # The control for the corruption tests: the round trip through safe_dump alone does
    # not break anything, so each failure below comes from its one mutation.
    for path in sorted(data_copy.glob("*.yaml")):
        _mutate(data_copy, path.stem, lambda data: None)
    kb = load_knowledge_from(data_copy)
    assert list(check(kb)) == []


def test_unknown_source_id_is_rejected_at_load(data_copy: Path) -> None:
    def change(rules: list[dict[str, Any]]) -> None:
        rules[0]["sources"].append("no-such-source")

    _mutate(data_copy, "rules", change)
    with pytest.raises(KnowledgeError, match="unknown source id 'no-such-source'"):
        load_knowledge_from(data_copy)


def test_a_source_nobody_cites_is_rejected_at_load(data_copy: Path) -> None:
    def change(sources: list[dict[str, Any]]) -> None:
        sources.append(
            {
                "id": "orphan-source",
                "kind": "study",
                "title": "A study no entry cites",
                "statement": "Nothing relies on this.",
                "year": 2020,
                "url": "https://example.org/orphan",
            }
        )

    _mutate(data_copy, "sources", change)
    with pytest.raises(KnowledgeError, match="orphan-source: cited by nothing"):
        load_knowledge_from(data_copy)


@pytest.mark.parametrize(
    "topic", ["symptoms", "conditions", "medications", "rules", "sources", "regimens", "warnings"]
)
def test_duplicate_id_is_rejected_at_load(data_copy: Path, topic: str) -> None:
    first_id: list[str] = []

    def change(entries: list[dict[str, Any]]) -> None:
        first_id.append(entries[0]["id"])
        entries.append(dict(entries[0]))

    _mutate(data_copy, topic, change)
    with pytest.raises(KnowledgeError, match=f"duplicate id '{first_id[0]}'"):
        load_knowledge_from(data_copy)


def test_rule_without_sources_is_rejected_at_load(data_copy: Path) -> None:
    def change(rules: list[dict[str, Any]]) -> None:
        rules[0]["sources"] = []

    _mutate(data_copy, "rules", change)
    with pytest.raises(KnowledgeError, match=r"rules\.yaml"):
        load_knowledge_from(data_copy)


def test_profile_naming_an_unknown_regimen_is_rejected_at_load(data_copy: Path) -> None:
    def change(profiles: list[dict[str, Any]]) -> None:
        _by_id(profiles, "nice-ng239")["regimen_by_cause"]["neurological"] = "no_such_regimen"

    _mutate(data_copy, "profiles", change)
    with pytest.raises(KnowledgeError, match="unknown regimen 'no_such_regimen'"):
        load_knowledge_from(data_copy)


def test_a_profile_without_a_low_egfr_band_for_everyone_is_rejected_at_load(
    data_copy: Path,
) -> None:
    # The renal caveat is the eGFR band "low": a profile must always have one.
    def change(profiles: list[dict[str, Any]]) -> None:
        _by_id(profiles, "nice-ng239")["bands"]["egfr"][0]["cutoffs"] = [
            {"below": 60, "band": "reduced"}
        ]

    _mutate(data_copy, "profiles", change)
    with pytest.raises(KnowledgeError, match=r"profiles\.nice-ng239: eGFR bands need a 'low'"):
        load_knowledge_from(data_copy)


def test_a_red_flag_question_naming_an_unknown_symptom_is_rejected_at_load(
    data_copy: Path,
) -> None:
    def change(questions: list[dict[str, Any]]) -> None:
        questions[0]["symptom"] = "no_such_symptom"

    _mutate(data_copy, "red_flag_questions", change)
    with pytest.raises(KnowledgeError, match=r"red_flag_questions\.rf_sudden: unknown symptom"):
        load_knowledge_from(data_copy)


def test_red_flag_naming_an_unknown_symptom_is_rejected_at_load(data_copy: Path) -> None:
    def change(flags: list[dict[str, Any]]) -> None:
        flags[0]["match"]["any"] = ["no_such_symptom"]

    _mutate(data_copy, "red_flags", change)
    with pytest.raises(KnowledgeError, match=r"red_flags\.\w+: unknown symptom 'no_such_symptom'"):
        load_knowledge_from(data_copy)


def test_milestone_tracked_by_an_unknown_symptom_is_rejected_at_load(data_copy: Path) -> None:
    def change(recovery: dict[str, Any]) -> None:
        _by_id(recovery["milestones"], "proximal_power")["tracked_by"] = ["no_such_symptom"]

    _mutate(data_copy, "recovery", change)
    with pytest.raises(
        KnowledgeError, match=r"recovery\.proximal_power: tracked_by names unknown symptom"
    ):
        load_knowledge_from(data_copy)


def test_rating_baseline_citing_an_unknown_source_is_rejected_at_load(data_copy: Path) -> None:
    def change(recovery: dict[str, Any]) -> None:
        recovery["baseline"]["sources"].append("no-such-source")

    _mutate(data_copy, "recovery", change)
    with pytest.raises(KnowledgeError, match="RatingBaseline: unknown source id 'no-such-source'"):
        load_knowledge_from(data_copy)


def test_measured_milestones_are_not_tracked_by_ratings_and_rated_ones_say_why(
    kb: Knowledge,
) -> None:
    milestones = {m.id: m for m in kb.recovery.milestones}
    for measured in ("reticulocyte_response", "motor_conduction_amplitude"):
        assert milestones[measured].tracked_by == []
    for m in milestones.values():
        if m.tracked_by:
            assert m.choice, f"{m.id}: the symptom mapping is a choice and must say why"
    assert kb.recovery.baseline.choice


def test_every_symptom_tracking_a_neurological_milestone_is_a_neurological_symptom(
    kb: Knowledge,
) -> None:
    for m in kb.recovery.milestones:
        for sid in m.tracked_by:
            assert sid == "@neurological" or sid in kb.neurological_symptoms, (m.id, sid)


# --- the engine follows the knowledge base, not numbers of its own -------------------------


def test_the_renal_caveat_follows_the_profiles_egfr_band(data_copy: Path) -> None:
    from b12dx.engine.assess import assess

    # Vignette 22: CKD with eGFR 42 and a raised MMA is "likely" (the renal caveat).
    patient = {
        "as_of": "2026-03-02",
        "age_years": 72,
        "sex": "male",
        "symptoms": [{"id": "loss_of_vibration_sense", "onset": "gradual", "duration_weeks": 30}],
        "conditions": [{"id": "chronic_kidney_disease", "egfr": 42}],
        "labs": [
            {"test": "total_b12", "value": 300, "unit": "pg/mL", "date": "2026-02-20"},
            {"test": "mma", "value": 73, "unit": "ng/mL", "date": "2026-02-20"},
        ],
    }
    shipped = assess(patient, knowledge=load_knowledge_from(DATA_DIR))
    assert shipped.deficiency_status == "likely"

    def lower_the_cutoff(profiles: Any) -> None:
        default = next(p for p in profiles if p.get("default"))
        default["bands"]["egfr"][0]["cutoffs"] = [{"below": 40, "band": "low"}]

    _mutate(data_copy, "profiles", lower_the_cutoff)
    moved = assess(patient, knowledge=load_knowledge_from(data_copy))
    # eGFR 42 is no longer low: the raised MMA confirms.
    assert moved.deficiency_status == "confirmed"
    assert "renal_mma_caveat" not in [w.id for w in moved.warnings]


def test_every_check_topic_is_known_and_used(kb) -> None:
    """The patient check shows a condition or medicine under its topic's question: a
    topic it does not know would hide the entry from every patient."""
    used = {e.topic for e in [*kb.conditions.values(), *kb.medications.values()] if e.topic}
    assert used <= set(kb.check_topics), used - set(kb.check_topics)
    assert set(kb.check_topics) <= used, set(kb.check_topics) - used


def test_every_emergency_question_records_symptoms_that_exist(kb) -> None:
    for q in kb.red_flag_questions.values():
        for sid in (q.symptom, *q.also):
            assert sid in kb.symptoms, (q.id, sid)
