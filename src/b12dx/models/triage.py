"""The triage knowledge (triage.yaml) and the triage attributes every symptom carries
(symptoms.yaml): what the engine's triage stage reads instead of symptom ids."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["emergency", "urgent", "soon", "routine"]
Tempo = Literal["sudden", "acute", "subacute", "chronic"]
# The levels at which a finding is sent elsewhere unless its entry says otherwise.
_SENT: tuple[Level, ...] = ("emergency", "urgent")


class _KB(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class WhenNew(_KB):
    """How soon a finding is seen by its tempo (a tempo not named adds nothing)."""

    sudden: Level | None = None
    acute: Level | None = None
    subacute: Level | None = None


class WhenNewByAge(_KB):
    """A finding that means something else when it is new (within weeks, or undated) at
    some ages: a new headache at 50 or over is giant cell arteritis until shown otherwise
    (cks-gca); a young child's back pain is not the mechanical back pain of adults."""

    from_years: float | None = Field(default=None, gt=0)
    below_years: float | None = Field(default=None, gt=0)
    level: Level
    elsewhere: str | None = None  # triage.yaml elsewhere: where it goes instead

    def applies(self, age_years: float) -> bool:
        return (self.from_years is None or age_years >= self.from_years) and (
            self.below_years is None or age_years < self.below_years
        )


class SymptomTriage(_KB):
    """A symptom's own triage attributes (symptoms.yaml), beside its group and role."""

    deficit: bool
    # Of the nervous system; None: as its group says (symptom_groups.yaml). A symptom
    # listed with the warning signs keeps its own body system (back pain is not a nerve
    # symptom; its danger is the weakness beside it, red_flags.yaml).
    neurological: bool | None = None
    when_new: WhenNew | None = None
    when_undated: Level | None = None
    when_severe_new: Level | None = None
    # New (sudden, acute or subacute) or undated at some ages: how soon, and where.
    when_new_by_age: list[WhenNewByAge] = Field(default_factory=list)
    always_severe: bool = False
    elsewhere: str | None = None
    infant_sign: bool = False
    # In pregnancy, new (within days) or severe: how soon, and where it goes instead
    # (pre-eclampsia's headache or visual disturbance, nice-ng133).
    when_new_in_pregnancy: Level | None = None
    elsewhere_in_pregnancy: str | None = None
    # Low mood, anxiety or exhaustion: never a self-care answer, with where to get help
    # (rules urgency.mood, note.mood_help).
    mood: bool = False


class TempoLimits(_KB):
    sudden_within_days: float = Field(gt=0)
    acute_within_days: float = Field(gt=0)
    subacute_within_weeks: float = Field(gt=0)
    sources: list[str] = Field(min_length=1)


class AgeGroup(_KB):
    id: Literal["infant", "child", "adolescent", "adult", "older_adult"]
    below: float | None
    name: str


class TriageClass(_KB):
    when_new: WhenNew = Field(default_factory=WhenNew)
    progressing_within_weeks: float | None = None
    when_progressing: Level | None = None
    when_sudden_onset_past: Level | None = None
    when_severe: Level | None = None
    sources: list[str] = Field(min_length=1)


class Elsewhere(_KB):
    """Where a finding b12dx does not assess is sent, and why it is not a B12 question."""

    id: str
    name: str
    text: str
    plain: str
    # The levels at which a new finding is sent there (a first seizure weeks ago still
    # goes to a first-seizure clinic, within 2 weeks).
    levels: list[Level] = Field(default_factory=lambda: list(_SENT))
    # The contract's next step it is given as when it is not an emergency.
    step: Literal["seek_specialist_advice", "refer_neurology"] = "seek_specialist_advice"
    # The entry a child or young person (under triage.yaml adult_from_years) is sent to
    # instead, where the adult words name adult causes.
    young: str | None = None
    sources: list[str] = Field(min_length=1)


class TriageKnowledge(_KB):
    tempo: TempoLimits
    red_flag_new_within_days: int = Field(gt=0)
    age_groups: list[AgeGroup] = Field(min_length=1)
    adult_from_years: int = Field(gt=0)
    # How soon an infant's or young child's urgent paediatric signs are seen (rule
    # triage.infant_signs), and below which age they count.
    infant_signs: Level
    young_child_below_years: float = Field(gt=0)
    # Days from the first dose of a course in which a severe result taken before it still
    # makes the answer same-day (hypokalaemia is watched in the first 48 hours).
    severe_result_watch_days: int = Field(ge=0)
    age_sources: list[str] = Field(min_length=1)
    classes: dict[Literal["neurological_deficit", "neurological_other"], TriageClass]
    elsewhere: list[Elsewhere]

    def age_group(self, age_years: float) -> AgeGroup:
        return next(g for g in self.age_groups if g.below is None or age_years < g.below)
