"""Diet advice: the RDA for the person's life stage and the B12 foods that suit their diet
(ods-b12)."""

from __future__ import annotations

from b12dx.engine.explain import explained
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import DietAdvice, FoodItem
from b12dx.models.knowledge import Rda
from b12dx.models.patient import PatientRecord


def life_stage(kb: Knowledge, p: PatientRecord) -> Rda:
    rows = kb.diet.rda
    if p.pregnant:
        return next(r for r in rows if r.pregnant)
    if p.breastfeeding:
        return next(r for r in rows if r.breastfeeding)
    return next(
        r
        for r in rows
        if r.age_min is not None and r.age_max is not None and r.age_min <= p.age_years < r.age_max
    )


def _foods(kb: Knowledge, diet: str, rda: Rda) -> list[FoodItem]:
    key = ("foods", diet, rda.stage)
    if key in kb.derived:
        cached: list[FoodItem] = kb.derived[key]
        return cached
    foods = [
        FoodItem(
            id=f.id,
            name=f.name,
            serving=f.serving,
            micrograms=f.ug,
            micrograms_max=f.ug_max,
            percent_of_rda=round(100 * f.ug / rda.ug),
            fortified=f.fortified,
        )
        for f in sorted(kb.diet.foods, key=lambda f: -f.ug)
        if diet in f.suits
    ]
    kb.derived[key] = foods
    return foods


def advise(kb: Knowledge, p: PatientRecord) -> DietAdvice:
    rda = life_stage(kb, p)
    foods = _foods(kb, p.diet, rda)
    wanted = {"stores_last_years"}
    if p.diet in ("vegan", "vegetarian", "restricted"):
        wanted.add("fortified_plant_milks")
    if p.diet in ("vegetarian", "omnivore", "restricted"):
        wanted.add("egg_yolk")
    if p.age_years >= 50:
        wanted.add("over_50_fortified")
    chosen = [n for n in kb.diet.notes if n.id in wanted]
    text = f"Recommended intake for {rda.name.lower()}: {rda.ug:g} micrograms of B12 a day."
    if p.diet == "vegan":
        text += " A vegan diet needs fortified foods or a supplement for life."
    return explained(
        kb,
        DietAdvice,
        "diet.advice",
        text=text,
        sources=[*rda.sources, *(s for n in chosen for s in n.sources)],
        life_stage=rda.stage,
        rda_micrograms=rda.ug,
        foods=foods,
        notes=[n.text for n in chosen],
    )
