"""Diet advice that fits the person: the reference intake of the profile's country for
their life stage (the UK reference nutrient intake under NICE, the US RDA under the US
label), the B12 foods that suit their diet and stage in that country's portions, and
what food cannot do (rule diet.advice)."""

from __future__ import annotations

from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings
from b12dx.engine.labs import LabSummary
from b12dx.engine.triage import infant
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import DietAdvice, FoodItem
from b12dx.models.knowledge import Profile, Rda
from b12dx.models.patient import PatientRecord


def food_bound_age(kb: Knowledge, p: PatientRecord) -> bool:
    """Old enough to absorb less B12 from food (foods.yaml fortified_from_years)."""
    return p.age_years >= kb.diet.fortified_from_years


# The causes where B12 is not absorbed: food cannot make up for it (nice-ng239).
ABSORPTION_CAUSES = ("malabsorption", "genetic")


def absorption_problem(f: Findings, labs: LabSummary) -> bool:
    """B12 is not absorbed (a cause of malabsorption, or intrinsic factor antibodies)."""
    return f.has_cause(*ABSORPTION_CAUSES) or labs.band("intrinsic_factor_antibody") == "positive"


_REFERENCE_NAMES = {"uk": "UK reference nutrient intake", "us": "US recommended dietary allowance"}


def _stage(rows: list[Rda], p: PatientRecord) -> Rda:
    if p.pregnant:
        return next(r for r in rows if r.pregnant)
    if p.breastfeeding:
        return next(r for r in rows if r.breastfeeding)
    return next(
        r
        for r in rows
        if r.age_min is not None and r.age_max is not None and r.age_min <= p.age_years < r.age_max
    )


def life_stage(kb: Knowledge, p: PatientRecord) -> Rda:
    """The US RDA row for the person's life stage (``rda_micrograms``)."""
    return _stage(kb.diet.rda, p)


def reference_intake(kb: Knowledge, profile: Profile, p: PatientRecord) -> Rda:
    """The reference intake of the profile's country for the person's life stage."""
    return _stage(kb.diet.uk_rni if profile.diet_reference == "uk" else kb.diet.rda, p)


def _foods(
    kb: Knowledge, profile: Profile, diet: str, us: Rda, ref: Rda, pregnant: bool
) -> list[FoodItem]:
    key = ("foods", diet, us.stage, ref.stage, profile.diet_reference, pregnant)
    if key in kb.derived:
        cached: list[FoodItem] = kb.derived[key]
        return cached
    metric = profile.diet_reference == "uk"
    foods = [
        FoodItem(
            id=f.id,
            name=f.name,
            serving=(f.serving_metric or f.serving) if metric else f.serving,
            micrograms=f.ug,
            micrograms_max=f.ug_max,
            percent_of_rda=round(100 * f.ug / us.ug),
            percent_of_reference=round(100 * f.ug / ref.ug),
            fortified=f.fortified,
        )
        for f in sorted(kb.diet.foods, key=lambda f: -f.ug)
        if diet in f.suits and not (pregnant and f.avoid_in_pregnancy)
    ]
    kb.derived[key] = foods
    return foods


def advise(
    kb: Knowledge, profile: Profile, f: Findings, labs: LabSummary, test_pending: bool
) -> DietAdvice:
    """``test_pending``: a B12 test is asked for and not yet taken (no supplement before
    it). Where absorption is the problem, food is never offered as the answer."""
    p = f.patient
    us = life_stage(kb, p)
    ref = reference_intake(kb, profile, p)
    baby = infant(kb, p)  # B12 from breast milk or formula, not adult foods
    foods = [] if baby else _foods(kb, profile, p.diet, us, ref, p.pregnant)
    wanted = {"stores_last_years"}
    if baby:
        wanted = {"infant_b12"}
    else:
        if p.diet in ("vegan", "vegetarian", "restricted"):
            wanted.add("fortified_plant_milks")
        if p.diet in ("vegetarian", "omnivore", "restricted"):
            wanted.add("egg_yolk")
        if food_bound_age(kb, p):
            wanted.add("over_50_fortified")
        if p.pregnant:
            wanted.add("liver_in_pregnancy")
    if absorption_problem(f, labs):
        wanted.add("absorption_not_diet")
    if test_pending:
        wanted.add("supplement_after_test")
    chosen = [n for n in kb.diet.notes if n.id in wanted]
    name = _REFERENCE_NAMES[profile.diet_reference]
    text = f"Reference intake for {ref.name.lower()} ({name}): {ref.ug:g} micrograms of B12 a day."
    if p.diet == "vegan" and not baby:
        text += " A vegan diet needs fortified foods or a supplement for life"
        text += " (a supplement after the blood test)." if test_pending else "."
    return explained(
        kb,
        DietAdvice,
        "diet.advice",
        text=text,
        sources=[*ref.sources, *us.sources, *(s for n in chosen for s in n.sources)],
        life_stage=us.stage,
        rda_micrograms=us.ug,
        reference_intake=name,
        reference_intake_micrograms=ref.ug,
        foods=foods,
        notes=[n.text for n in chosen],
    )
