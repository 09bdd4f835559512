"""One block of the synthetic population as numpy arrays: who people are and what happened.

Every date is a number of days before the reference date (``as_of``); -1 means "none".
A person holds at most one of each thing (one diet, one course of each medicine, one
recent B12 result, ...), which keeps the whole block a set of flat arrays that numpy
draws at once. The rates are in ``synth.rates``; the fixed scenarios (every gap and its
near miss) are laid over every ``SCENARIO_STRIDE``-th person by ``apply_scenarios``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from b12dx.synth.rates import AGE_BANDS, BY_AGE, rate

I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

NONE = -1
YEAR = 365
MONTH = 30  # scenario spacing; 11 vs 13 "months" are 330 vs 395 days, clear of 12 months
SCENARIO_STRIDE = 200

# Symptom ids (symptoms.yaml) that a person can have recorded: B12-type, never red flags.
SYMPTOMS = (
    "paresthesia",
    "numbness",
    "muscle_weakness",
    "difficulty_walking",
    "balance_problems",
    "fatigue",
    "burning_pain",
    "tremor",
)
B12_UNITS = ("pg/mL", "ng/L", "pmol/L")  # factors to pmol/L: 0.7378, 0.7378, 1
MMA_UNITS = ("umol/L", "nmol/L")
PMOL_PER_NG = 0.7378  # labs.yaml: 1 ng/L = 0.7378 pmol/L
DIET_NONE, DIET_VEGETARIAN, DIET_VEGAN = 0, 1, 2
# Maintenance injections every 3 months (BNF; clinical-reference.md section 6).
MAINTENANCE_DAYS = 90
LOADING_OFFSETS = (0, 2, 4, 7, 9, 11)  # six doses over two weeks, on alternate days


@dataclass
class Population:
    person: npt.NDArray[np.int64]  # person_id, from 1
    age: I32
    female: BOOL
    birth_day: I32  # days before as_of
    scenario: I32  # index into SCENARIOS, or -1
    diet: npt.NDArray[np.int8]
    diet_day: I32
    n2o_day: I32
    t2d_day: I32
    neuropathy_day: I32
    pa_day: I32
    gastrectomy_day: I32
    bariatric_day: I32
    ileal_day: I32
    metformin_day: I32  # start of the current course
    ppi_day: I32
    h2_day: I32
    folic_day: I32
    symptom: npt.NDArray[np.int8]  # index into SYMPTOMS, or -1
    symptom_day: I32
    b12_day: I32
    b12_pmol: F64
    b12_unit: npt.NDArray[np.int8]
    mma_day: I32
    mma_umol: F64
    mma_unit: npt.NDArray[np.int8]
    tx_day: I32  # first injection of the loading course
    tx_stop: I32  # maintenance continues on a 90-day grid down to this day (0 = to date)

    def __len__(self) -> int:
        return len(self.person)


# Registered practices of unequal size (a share of people each), so the report's
# breakdown by care site and its funnel plot have something to show; drawn from the
# person id, not the random stream, so adding them changed no other synthetic value.
PRACTICE_SHARES = (0.22, 0.16, 0.13, 0.11, 0.09, 0.08, 0.07, 0.05, 0.04, 0.03, 0.02)


def practice_of(person: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The practice (1..len(PRACTICE_SHARES)) each person is registered with."""
    spread = (person * 2654435761 % 2**32) / 2**32  # Knuth's multiplicative hash
    edges = np.cumsum(PRACTICE_SHARES[:-1])
    return np.searchsorted(edges, spread, side="right").astype(np.int64) + 1


def _band(age: I32) -> npt.NDArray[np.intp]:
    edges = np.array([hi for _, hi in AGE_BANDS[:-1]])
    return np.searchsorted(edges, age, side="left").astype(np.intp)


def _by_age(name: str, band: npt.NDArray[np.intp]) -> F64:
    return np.asarray(BY_AGE[name], dtype=np.float64)[band]


def _days(rng: np.random.Generator, n: int, low: int, high: int) -> I32:
    return rng.integers(low, high, n, dtype=np.int32, endpoint=True)


def _where(mask: BOOL, days: I32) -> I32:
    return np.where(mask, days, NONE).astype(np.int32)


def draw(rng: np.random.Generator, first_person: int, n: int) -> Population:
    """A block of n people, person ids first_person.. (draws in a fixed order: determinism)."""

    def u() -> F64:  # one uniform per person; the draws happen in a fixed order
        return rng.random(n)

    bands = np.array(AGE_BANDS)
    band = rng.choice(len(AGE_BANDS), n, p=np.asarray(BY_AGE["age_band_share"]))
    age = rng.integers(bands[band, 0], bands[band, 1], endpoint=True).astype(np.int32)
    band = _band(age)
    female = u() < rate("female")
    birth_day = (age * 365.25 + rng.integers(0, 365, n)).astype(np.int32)
    old = age >= 60

    r = u()
    diet = np.where(
        r < rate("vegan"),
        DIET_VEGAN,
        np.where(r < rate("vegan") + rate("vegetarian"), DIET_VEGETARIAN, DIET_NONE),
    ).astype(np.int8)
    diet_day = _where(diet > 0, _days(rng, n, 30, 5 * YEAR))
    n2o_day = _where((age <= 24) & (u() < rate("nitrous_oxide_18_24")), _days(rng, n, 7, 300))

    t2d = u() < _by_age("type2_diabetes", band)
    t2d_day = _where(t2d, _days(rng, n, 60, 10 * YEAR))
    metformin = t2d & (u() < rate("metformin_if_t2d"))
    metformin_day = _where(metformin, np.minimum(t2d_day, _days(rng, n, 30, 10 * YEAR)))
    neuropathy_day = _where(t2d & (u() < rate("neuropathy_if_t2d")), _days(rng, n, 30, 3 * YEAR))

    ppi_len = np.clip(rng.exponential(rate("ppi_mean_days"), n), 30, 10 * YEAR).astype(np.int32)
    ppi_day = _where(u() < _by_age("ppi", band), ppi_len)
    h2_len = np.clip(rng.exponential(rate("ppi_mean_days"), n), 30, 10 * YEAR).astype(np.int32)
    h2_day = _where(u() < rate("h2_blocker"), h2_len)
    pa_day = _where(u() < _by_age("pernicious_anemia", band), _days(rng, n, 180, 10 * YEAR))
    gastrectomy_day = _where(u() < _by_age("gastrectomy", band), _days(rng, n, 180, 10 * YEAR))
    bariatric_day = _where(u() < _by_age("bariatric_surgery", band), _days(rng, n, 180, 10 * YEAR))
    ileal_day = _where(u() < rate("ileal_resection"), _days(rng, n, 180, 10 * YEAR))
    folic_day = _where(u() < rate("folic_acid"), _days(rng, n, 14, 2 * YEAR))

    # B12 status: deficient / indeterminate / normal, by age, raised by the risk factors.
    p_def = np.where(old, rate("b12_deficient_60_plus"), rate("b12_deficient_under_60"))
    p_def = p_def * np.where(metformin, rate("deficient_if_metformin"), 1.0)
    p_def = p_def * np.where(
        (diet == DIET_VEGAN) | (n2o_day >= 0), rate("deficient_if_vegan_or_n2o"), 1.0
    )
    malabsorption = (pa_day >= 0) | (gastrectomy_day >= 0) | (ileal_day >= 0)
    p_ind = np.where(old, rate("b12_indeterminate_60_plus"), rate("b12_indeterminate_under_60"))
    r = u()
    status = np.where(r < p_def, 0, np.where(r < p_def + p_ind, 1, 2))
    b12_pmol = np.select(
        [status == 0, status == 1],
        [rng.uniform(60, 132, n), rng.uniform(135, 256, n)],
        260 + rng.gamma(2.0, 120.0, n),
    )

    p_symptom = _by_age("symptom", band) * np.where(status == 0, 2.0, 1.0)
    has_symptom = u() < p_symptom
    symptom = np.where(has_symptom, rng.integers(0, len(SYMPTOMS), n), NONE).astype(np.int8)
    # First recorded a day to 11 months before as_of: a few are new within triage's acute
    # window (screen.new_finding), most are not.
    symptom_day = _where(has_symptom, _days(rng, n, 1, 330))

    p_test = np.maximum.reduce(
        [
            np.full(n, rate("tested_12m")),
            np.where(metformin, rate("tested_12m_metformin"), 0.0),
            np.where(has_symptom, rate("tested_12m_symptom"), 0.0),
        ]
    )
    r = u()
    recent = r < p_test
    older = ~recent & (u() < rate("older_test"))
    b12_day = np.where(
        recent, _days(rng, n, 0, 364), np.where(older, _days(rng, n, 366, 10 * YEAR), NONE)
    ).astype(np.int32)
    # On maintenance injections a B12 level is not interpretable and is not re-tested.
    b12_day[malabsorption] = NONE
    b12_unit = rng.choice(len(B12_UNITS), n, p=[0.35, 0.40, 0.25]).astype(np.int8)

    tested = b12_day >= 0
    shown = np.where(tested, status, 2)
    # Indeterminate: MMA within 3 months (60%), later (10%), or never.
    r = u()
    mma_after = np.where(
        r < rate("mma_after_indeterminate"),
        _days(rng, n, 7, 80),
        np.where(r < rate("mma_after_indeterminate") + 0.10, _days(rng, n, 100, 180), NONE),
    )
    mma_day = np.where((shown == 1) & (mma_after >= 0), b12_day - mma_after, NONE)
    mma_day = np.where(mma_day >= 0, mma_day, NONE).astype(np.int32)
    elevated = u() < 0.5
    mma_umol = np.where(elevated, rng.uniform(0.45, 1.5, n), rng.uniform(0.12, 0.34, n))
    mma_unit = rng.choice(len(MMA_UNITS), n, p=[0.6, 0.4]).astype(np.int8)

    # Deficient: injections within a month (85%), later (5%), or never.
    r = u()
    tx_after = np.where(
        r < rate("treated_within_month"),
        _days(rng, n, 1, 28),
        np.where(r < rate("treated_within_month") + 0.05, _days(rng, n, 35, 90), NONE),
    )
    tx_day = np.where((shown == 0) & (tx_after >= 0), b12_day - tx_after, NONE)
    tx_day = np.where(tx_day >= 0, tx_day, NONE).astype(np.int32)
    # Malabsorption: lifelong maintenance since a month after the diagnosis.
    lasting = np.maximum.reduce([pa_day, gastrectomy_day, ileal_day])
    tx_day = np.where(malabsorption, np.maximum(lasting - 30, 20), tx_day).astype(np.int32)
    lapsed = u() < rate("maintenance_lapsed")
    tx_stop = np.where(lapsed, _days(rng, n, 120, 400), 0).astype(np.int32)

    return Population(
        person=np.arange(first_person, first_person + n, dtype=np.int64),
        age=age, female=female, birth_day=birth_day,
        scenario=np.full(n, NONE, dtype=np.int32),
        diet=diet, diet_day=diet_day, n2o_day=n2o_day, t2d_day=t2d_day,
        neuropathy_day=neuropathy_day, pa_day=pa_day, gastrectomy_day=gastrectomy_day,
        bariatric_day=bariatric_day, ileal_day=ileal_day, metformin_day=metformin_day,
        ppi_day=ppi_day, h2_day=h2_day, folic_day=folic_day,
        symptom=symptom, symptom_day=symptom_day,
        b12_day=b12_day, b12_pmol=b12_pmol, b12_unit=b12_unit,
        mma_day=mma_day, mma_umol=mma_umol, mma_unit=mma_unit,
        tx_day=tx_day, tx_stop=tx_stop,
    )  # fmt: skip


# -- the fixed scenarios ------------------------------------------------------------------
# Each: (id, expected screening flags, settings). Settings name Population fields; a
# B12 value is in pmol/L and its unit index picks how it is written. Near misses carry no
# flag of their own: they sit just on the safe side of a boundary.
Setting = dict[str, float | int]
_B12_OK = 400.0
_B12_INDET = 185.0  # 251 ng/L
_B12_DEF = 90.0  # 122 ng/L
_PMOL = 2  # index of pmol/L in B12_UNITS
_NGL = 1

SCENARIOS: tuple[tuple[str, tuple[str, ...], Setting], ...] = (
    (
        "ppi_25_months_symptom_untested",
        ("untested_at_risk",),
        {"age": 58, "ppi_day": 25 * MONTH + 10, "symptom": 0, "symptom_day": 40},
    ),
    (
        "ppi_23_months_symptom_untested",
        (),
        {"age": 58, "ppi_day": 23 * MONTH - 10, "symptom": 0, "symptom_day": 40},
    ),
    (
        "h2_25_months_symptom_untested",
        ("untested_at_risk",),
        {"age": 63, "h2_day": 25 * MONTH + 10, "symptom": 1, "symptom_day": 60},
    ),
    ("ppi_30_months_no_symptom", (), {"age": 50, "ppi_day": 30 * MONTH}),
    ("symptom_without_risk_factor", (), {"age": 35, "symptom": 2, "symptom_day": 20}),
    (
        "metformin_symptom_tested_13_months_ago",
        ("untested_at_risk", "monitoring_due"),
        {
            "age": 66,
            "t2d_day": 6 * YEAR,
            "metformin_day": 5 * YEAR,
            "symptom": 1,
            "symptom_day": 30,
            "b12_day": 13 * MONTH + 5,
            "b12_pmol": _B12_OK,
        },
    ),
    (
        "metformin_symptom_tested_11_months_ago",
        (),
        {
            "age": 66,
            "t2d_day": 6 * YEAR,
            "metformin_day": 5 * YEAR,
            "symptom": 1,
            "symptom_day": 30,
            "b12_day": 11 * MONTH,
            "b12_pmol": _B12_OK,
        },
    ),
    (
        "metformin_tested_13_months_ago",
        ("monitoring_due",),
        {
            "age": 61,
            "t2d_day": 4 * YEAR,
            "metformin_day": 3 * YEAR,
            "b12_day": 13 * MONTH + 5,
            "b12_pmol": _B12_OK,
        },
    ),
    (
        "metformin_tested_11_months_ago",
        (),
        {
            "age": 61,
            "t2d_day": 4 * YEAR,
            "metformin_day": 3 * YEAR,
            "b12_day": 11 * MONTH,
            "b12_pmol": _B12_OK,
        },
    ),
    (
        "metformin_neuropathy_never_tested",
        ("untested_at_risk", "monitoring_due"),
        {"age": 70, "t2d_day": 8 * YEAR, "metformin_day": 7 * YEAR, "neuropathy_day": YEAR},
    ),
    (
        "indeterminate_mma_4_months_after",
        ("indeterminate_not_followed_up",),
        {
            "age": 52,
            "b12_day": 7 * MONTH,
            "b12_pmol": _B12_INDET,
            "b12_unit": _NGL,
            "mma_day": 3 * MONTH,
            "mma_umol": 0.30,
        },
    ),
    (
        "indeterminate_mma_2_5_months_after",
        (),
        {
            "age": 52,
            "b12_day": 7 * MONTH,
            "b12_pmol": _B12_INDET,
            "b12_unit": _NGL,
            "mma_day": 7 * MONTH - 75,
            "mma_umol": 0.30,
        },
    ),
    (
        "indeterminate_no_mma",
        ("indeterminate_not_followed_up",),
        {"age": 45, "b12_day": 5 * MONTH, "b12_pmol": _B12_INDET, "b12_unit": _PMOL},
    ),
    (
        "deficient_untreated",
        ("deficient_untreated",),
        {"age": 74, "b12_day": 3 * MONTH, "b12_pmol": _B12_DEF},
    ),
    (
        "deficient_treated_after_45_days",
        ("deficient_untreated",),
        {"age": 74, "b12_day": 3 * MONTH, "b12_pmol": _B12_DEF, "tx_day": 3 * MONTH - 45},
    ),
    (
        "deficient_treated_after_20_days",
        (),
        {"age": 74, "b12_day": 3 * MONTH, "b12_pmol": _B12_DEF, "tx_day": 3 * MONTH - 20},
    ),
    ("folic_acid_no_b12", ("folic_acid_without_b12",), {"age": 33, "folic_day": 6 * MONTH}),
    (
        "folic_acid_after_b12_test",
        (),
        {"age": 33, "folic_day": 6 * MONTH, "b12_day": 6 * MONTH + 14, "b12_pmol": _B12_OK},
    ),
    (
        "maintenance_last_dose_150_days_ago",
        ("maintenance_overdue",),
        {"age": 68, "pa_day": 6 * YEAR, "tx_day": 150 + 11 + 20 * MAINTENANCE_DAYS, "tx_stop": 150},
    ),
    (
        "maintenance_last_dose_95_days_ago",
        (),
        {"age": 68, "pa_day": 6 * YEAR, "tx_day": 95 + 11 + 20 * MAINTENANCE_DAYS, "tx_stop": 95},
    ),
    (
        "vegan_symptom_untested",
        ("untested_at_risk",),
        {"age": 27, "diet": DIET_VEGAN, "diet_day": 3 * YEAR, "symptom": 0, "symptom_day": 50},
    ),
    (
        "nitrous_oxide_symptom_untested",
        ("untested_at_risk",),
        {"age": 21, "n2o_day": 60, "symptom": 1, "symptom_day": 20},
    ),
    (
        "gastrectomy_symptom_untested_no_injections",
        ("untested_at_risk",),
        {"age": 64, "gastrectomy_day": 4 * YEAR, "symptom": 4, "symptom_day": 90},
    ),
    (
        "bariatric_symptom_tested_11_months_ago",
        (),
        {
            "age": 44,
            "bariatric_day": 3 * YEAR,
            "symptom": 5,
            "symptom_day": 60,
            "b12_day": 11 * MONTH,
            "b12_pmol": _B12_OK,
        },
    ),
    # Triage (screen.new_finding): numbness first recorded 3 days ago is seen now. Its
    # near miss is symptom_without_risk_factor (20 days: past the 7-day acute window).
    ("numbness_new_3_days", ("new_finding",), {"age": 52, "symptom": 1, "symptom_day": 3}),
)

_CLEAR_ALL = {
    f.name: NONE
    for f in fields(Population)
    if f.name.endswith("_day") and f.name not in ("birth_day",)
}


def apply_scenarios(pop: Population) -> None:
    """Turn every SCENARIO_STRIDE-th person (by id) into the next fixed scenario."""
    index = pop.person - 1
    rows = np.flatnonzero(index % SCENARIO_STRIDE == SCENARIO_STRIDE // 2)
    if not len(rows):
        return
    which = (index[rows] // SCENARIO_STRIDE) % len(SCENARIOS)
    pop.scenario[rows] = which
    for name, none in _CLEAR_ALL.items():
        getattr(pop, name)[rows] = none
    pop.diet[rows] = DIET_NONE
    pop.symptom[rows] = NONE
    pop.tx_stop[rows] = 0
    pop.b12_unit[rows] = 0
    for k, (_, _, settings) in enumerate(SCENARIOS):
        sel = rows[which == k]
        if not len(sel):
            continue
        for name, value in settings.items():
            getattr(pop, name)[sel] = value
        if "age" in settings:
            pop.birth_day[sel] = int(settings["age"] * 365.25) + 100
