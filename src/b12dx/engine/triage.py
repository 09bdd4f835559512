"""Triage: how soon the presentation needs the person seen, whatever its cause (rules
triage.*, triage.yaml). It is decided before and apart from the B12 reasoning, which can
add to it but never lower it (engine/urgency.py takes the most urgent of the two).

It reads only attributes: each symptom's body system (its group's ``neurological``
flag), whether it is a deficit, what it means when new, undated or severe
(symptoms.yaml); each finding's tempo (sudden, acute, subacute, chronic) from its onset
and duration; the person's age group. No symptom is named here, so a symptom added to
the knowledge base is triaged by its attributes without a new rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from b12dx.knowledge.loader import Knowledge
from b12dx.models.patient import PatientRecord, SymptomEntry
from b12dx.models.triage import Elsewhere, Level, Tempo, TriageClass, WhenNewByAge


@dataclass(frozen=True)
class Alarm:
    """One reason the presentation must be seen within a time, whatever its cause."""

    id: str  # the red flag id when it is an emergency (red_flags[].id)
    level: Level
    rule: str
    name: str  # what was found, in words
    symptoms: tuple[str, ...]
    sources: tuple[str, ...]
    elsewhere: Elsewhere | None = None  # not a B12 question: where it goes instead


def tempo(kb: Knowledge, entry: SymptomEntry) -> Tempo | None:
    """Sudden (minutes to hours), acute (days), subacute (weeks) or chronic (months), by
    the recorded onset word and the duration; None when nothing says when it began. A
    finding recorded as sudden is sudden while it is new (within the acute window, or
    with no duration); begun longer ago, its duration decides (rule
    triage.sudden_onset_past gives it its own floor)."""
    if entry.duration_weeks is None:
        return "sudden" if entry.onset == "sudden" else None
    limits = kb.triage.tempo
    # To a tenth of a day: a duration written in weeks to two places (0.14 for a day)
    # reads as the day it stands for.
    days = round(entry.duration_weeks * 7, 1)
    if days < limits.sudden_within_days:
        return "sudden"
    if days <= limits.acute_within_days:
        return "sudden" if entry.onset == "sudden" else "acute"
    if entry.duration_weeks <= limits.subacute_within_weeks:
        return "subacute"
    return "chronic"


def is_new(t: Tempo | None) -> bool:
    return t in ("sudden", "acute")


def rank(kb: Knowledge, level: str) -> int:
    """How urgent a level is (urgency.yaml order: emergency 0 ... self_care 4)."""
    return kb.urgency[level].order


def infant(kb: Knowledge, record: PatientRecord) -> bool:
    """Under a year (triage.yaml age group infant)."""
    return kb.triage.age_group(record.age_years).id == "infant"


def young_child(kb: Knowledge, record: PatientRecord) -> bool:
    """An infant or young child, whose lethargy, pallor or anaemia is urgent (triage.yaml
    young_child_below_years)."""
    return record.age_years < kb.triage.young_child_below_years


def neurological(kb: Knowledge, sid: str) -> bool:
    """A symptom of the nervous system (its own ``neurological``, else its group's)."""
    return sid in kb.nervous_system


def nerve_deficit(kb: Knowledge, sid: str) -> bool:
    """A loss of nerve, brain, cord or eye function (of the nervous system, itself a
    deficit), whatever its role."""
    return sid in kb.deficit_symptoms


def _class(kb: Knowledge, sid: str) -> TriageClass | None:
    if not neurological(kb, sid):
        return None
    if kb.symptoms[sid].deficit:
        return kb.triage.classes.get("neurological_deficit")
    return kb.triage.classes.get("neurological_other")


def level_when_new(kb: Knowledge, sid: str, t: Tempo) -> Level | None:
    """How soon a finding of this symptom is seen when it has tempo ``t``: the more
    urgent of its own when_new and its body system's class; None when the tempo (chronic)
    adds nothing."""
    if t == "chronic":
        return None
    klass = _class(kb, sid)
    sets = (kb.symptoms[sid].when_new, klass.when_new if klass else None)
    best: Level | None = None
    for w in sets:
        lv: Level | None = getattr(w, t) if w is not None else None
        if lv is not None and (best is None or rank(kb, lv) < rank(kb, best)):
            best = lv
    return best


def severe(kb: Knowledge, entry: SymptomEntry) -> bool:
    """Recorded as severe, or severe in itself (symptoms.yaml always_severe)."""
    return entry.severity == "severe" or kb.symptoms[entry.id].always_severe


def by_age(kb: Knowledge, sid: str, age_years: float | None) -> WhenNewByAge | None:
    """The symptom's first when_new_by_age entry for this age, if any."""
    if age_years is None:
        return None
    return next((w for w in kb.symptoms[sid].when_new_by_age if w.applies(age_years)), None)


def symptom_alarms(
    kb: Knowledge, entry: SymptomEntry, age_years: float | None = None
) -> list[tuple[Level, str]]:
    """Each (level, rule) one finding calls for by its own attributes, tempo and the
    person's age."""
    s = kb.symptoms[entry.id]
    klass = _class(kb, entry.id)
    t = tempo(kb, entry)
    out: list[tuple[Level, str]] = []
    new = level_when_new(kb, entry.id, t) if t is not None else None
    if new is not None:
        out.append((new, "triage.new_finding"))
    at_age = by_age(kb, entry.id, age_years)
    if at_age is not None and t in ("sudden", "acute", "subacute", None):
        # New within weeks, or with no date (which cannot show it is long-standing).
        out.append((at_age.level, "triage.new_finding_by_age"))
    if t is None and s.when_undated is not None:
        out.append((s.when_undated, "triage.undated_finding"))
    if klass is not None and klass.when_severe is not None and severe(kb, entry):
        out.append((klass.when_severe, "triage.severe_finding"))
    if s.when_severe_new is not None and is_new(t) and severe(kb, entry):
        out.append((s.when_severe_new, "triage.severe_finding"))
    if (
        klass is not None
        and klass.when_progressing is not None
        and klass.progressing_within_weeks is not None
        and entry.progressing is not False
        and entry.duration_weeks is not None
        and entry.duration_weeks <= klass.progressing_within_weeks
    ):
        # Begun within weeks and getting worse, or not recorded as stable: what is
        # rapidly progressive cannot be told without seeing the person.
        out.append((klass.when_progressing, "triage.progressing_finding"))
    if (
        klass is not None
        and klass.when_sudden_onset_past is not None
        and entry.onset == "sudden"
        and t in ("subacute", "chronic")
    ):
        out.append((klass.when_sudden_onset_past, "triage.sudden_onset_past"))
    return out


_WORDS = {
    "triage.new_finding": "{tempo}",
    "triage.new_finding_by_age": "{tempo}, at this age",
    "triage.undated_finding": "no date recorded",
    "triage.severe_finding": "severe",
    "triage.progressing_finding": "begun within 4 weeks, not known to be stable",
    "triage.sudden_onset_past": "sudden onset, {tempo}",
}
_TEMPO_WORDS = {
    "sudden": "sudden onset",
    "acute": "new within days",
    "subacute": "new within weeks",
    "chronic": "for months",
    None: "onset not recorded",
}


def _name(kb: Knowledge, rule: str, entries: Iterable[SymptomEntry]) -> str:
    """'Gait ataxia (sensory ataxia), sudden onset; numbness, loss of sensation, new
    within days'."""
    parts = [
        f"{kb.symptoms[e.id].clinical_name.lower()}, "
        + _WORDS[rule].format(tempo=_TEMPO_WORDS[tempo(kb, e)])
        for e in entries
    ]
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def _pregnancy_alarms(
    kb: Knowledge, symptoms: Mapping[str, SymptomEntry], places: Mapping[str, Elsewhere]
) -> list[Alarm]:
    """Rule triage.pregnancy: a finding that means something else in pregnancy when new,
    severe, or getting worse and not long-standing (symptoms.yaml when_new_in_pregnancy):
    a headache worsening over two weeks is pre-eclampsia's as much as a new one."""
    out: list[Alarm] = []
    rule = "triage.pregnancy"
    for sid, e in symptoms.items():
        s = kb.symptoms[sid]
        t = tempo(kb, e)
        worsening = e.progressing is True and t != "chronic"
        if s.when_new_in_pregnancy is None or not (is_new(t) or severe(kb, e) or worsening):
            continue
        where = places[s.elsewhere_in_pregnancy] if s.elsewhere_in_pregnancy else None
        out.append(
            Alarm(
                id=f"pregnancy_{sid}",
                level=s.when_new_in_pregnancy,
                rule=rule,
                name=f"{s.clinical_name}, in pregnancy",
                symptoms=(sid,),
                sources=tuple(
                    dict.fromkeys([*kb.rules[rule].sources, *(where.sources if where else [])])
                ),
                elsewhere=where,
            )
        )
    return out


def alarms(
    kb: Knowledge,
    record: PatientRecord,
    symptoms: Mapping[str, SymptomEntry],
    explained_by_strain: frozenset[str],
) -> list[Alarm]:
    """Every alarm of the presentation's findings, most urgent first, one per rule and
    level (each names its findings). ``explained_by_strain``: findings the ordinary strain
    pattern of seed-weakness accounts for (rule suspicion.strain_pattern), which raise no
    alarm. An infant's low haemoglobin is read with the results (urgency.infant_anaemia)."""
    places = {e.id: e for e in kb.triage.elsewhere}
    young = record.age_years < kb.triage.adult_from_years
    grouped: dict[tuple[Level, str, str | None], list[SymptomEntry]] = {}
    for sid, entry in symptoms.items():
        if sid in explained_by_strain:
            continue
        for level, rule in symptom_alarms(kb, entry, record.age_years):
            # Where it goes instead, at the levels its entry sends it (triage.yaml).
            at_age = by_age(kb, sid, record.age_years)
            place = (
                (at_age.elsewhere if at_age is not None else None)
                if rule == "triage.new_finding_by_age"
                else kb.symptoms[sid].elsewhere
                if rule != "triage.severe_finding"
                else None
            )
            if place is not None and level not in places[place].levels:
                place = None
            if place is not None and young and places[place].young is not None:
                place = places[place].young
            grouped.setdefault((level, rule, place), []).append(entry)
    out: list[Alarm] = []
    for (level, rule, place), entries in grouped.items():
        sources = list(kb.rules[rule].sources)
        for e in entries:
            klass = _class(kb, e.id)
            sources += kb.symptoms[e.id].sources if klass is None else klass.sources
        where = places[place] if place else None
        if where is not None:
            sources += where.sources
        # The red flag id when an emergency: the rule, and where it is sent if elsewhere.
        flag_id = rule.split(".")[1] + (f"_{place}" if place else "")
        out.append(
            Alarm(
                id=flag_id,
                level=level,
                rule=rule,
                name=_name(kb, rule, entries),
                symptoms=tuple(e.id for e in entries),
                sources=tuple(dict.fromkeys(sources)),
                elsewhere=where,
            )
        )
    if record.pregnant:
        out += _pregnancy_alarms(kb, symptoms, places)
    signs = [s for s in symptoms if kb.symptoms[s].infant_sign]
    if young_child(kb, record) and signs:
        rule = "triage.infant_signs"
        out.append(
            Alarm(
                id="infant_signs_urgent",
                level=kb.triage.infant_signs,
                rule=rule,
                name="; ".join(kb.symptoms[s].clinical_name.lower() for s in signs),
                symptoms=tuple(signs),
                sources=tuple(kb.rules[rule].sources),
            )
        )
    return sorted(out, key=lambda a: rank(kb, a.level))
