"""The clinical picture drawn once from the record: symptoms by group, neurological
involvement, red flags, risk factors, causes, treatment history and the symptom ratings
over the course (each symptom's baseline, and whether the course is neurological). The
rule modules read from it; none of them looks at the raw record again for these facts."""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Mapping
from dataclasses import dataclass

from b12dx.engine import triage
from b12dx.engine.triage import Alarm
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Differential, RedFlag, RiskFactor
from b12dx.models.patient import (
    ConditionEntry,
    PatientRecord,
    Rating,
    SymptomEntry,
    SymptomRating,
    TreatmentDose,
)

_RANK = {rating: i for i, rating in enumerate(typing.get_args(Rating))}


def rank(rating: str) -> int:
    """none 0 < mild 1 < moderate 2 < severe 3."""
    return _RANK[rating]


@dataclass(frozen=True)
class MatchedRiskFactor:
    factor: RiskFactor
    qualifier: str  # what the record showed, e.g. "duration not recorded"


@dataclass(frozen=True)
class Findings:
    patient: PatientRecord
    as_of: dt.date
    # Below triage.yaml's adult_from_years (16): adult thresholds and regimens are not
    # validated (nice-ng239).
    under_16: bool
    symptoms: dict[str, SymptomEntry]
    b12_symptoms: list[str]  # features of B12 deficiency that count for testing
    neuro_symptoms: list[str]  # the B12 features that are neurological
    neuro_groups: frozenset[str]
    neurological: bool
    # Findings the ordinary strain pattern accounts for (seed-weakness): no alarm, and no
    # nerve sign in a child.
    explained_by_strain: frozenset[str]
    # A neurological feature of B12's own pattern (peripheral nerves, cord, optic nerve),
    # not memory or thinking alone (symptom_groups.yaml specific).
    specific_neurological: bool
    strain_pattern: bool
    # The symptoms as the strain comparison reads them (a strain ache as local aching).
    strain_symptoms: dict[str, SymptomEntry]
    # Difficulty swallowing (not sudden, 16 and over): suspected-cancer referral (NG12);
    # with no other nerve feature it is not counted as B12 neuropathy.
    cancer_pathway: bool
    # Every triage alarm (engine/triage.py, named patterns of red_flags.yaml included),
    # most urgent first; the emergencies among them are the red flags.
    alarms: list[Alarm]
    red_flags: list[Alarm]
    risk_factors: list[MatchedRiskFactor]
    short_acid_suppression: list[str]  # PPI/H2 recorded for less than the risk duration
    conditions: frozenset[str]
    medications: frozenset[str]
    exposures: frozenset[str]
    doses: list[TreatmentDose]
    ratings: dict[str, list[SymptomRating]]  # each symptom's ratings, oldest first
    # Each rated symptom's rating at the start of the course under way (none without doses).
    baselines: dict[str, SymptomRating]
    # Neurological symptoms rated above none at the start of the course under way.
    course_neuro_symptoms: list[str]
    # The regimen's notion of neurological: involvement now, or at the start of the course.
    neurological_course: bool
    # Nerve symptoms present now that are getting worse or new during the course: recorded
    # as progressing, rated higher than at their best since the first dose, begun after
    # the first dose, or rated none at its start.
    worsening_neuro: list[str]
    # Nerve symptoms present now that are not known to be getting better: progressing, rated
    # above their best rating since the first dose, or with no ratings to tell.
    returning_neuro: list[str]

    @property
    def elsewhere(self) -> list[Alarm]:
        """The alarms that are not a B12 question: sent elsewhere (triage.yaml)."""
        return [a for a in self.alarms if a.elsewhere is not None]

    @property
    def swollen_painful_leg(self) -> bool:
        """Leg pain or aching with swelling: a deep vein thrombosis is excluded the same
        day (rule urgency.swollen_leg, nice-ng158)."""
        return swollen_painful_leg(self.symptoms)

    @property
    def folic_prophylaxis(self) -> bool:
        """Folic acid taken in pregnancy to prevent neural tube defects
        (nhs-pregnancy-vitamins): never to be stopped, never the masking warning, which is
        about treating anaemia with folic acid while B12 may be low."""
        return self.patient.pregnant and "folic_acid" in self.medications

    @property
    def nitrous_oxide(self) -> bool:
        return "nitrous_oxide" in self.exposures

    @property
    def first_dose(self) -> dt.date | None:
        return self.doses[0].date if self.doses else None

    @property
    def last_dose(self) -> dt.date | None:
        return self.doses[-1].date if self.doses else None

    @property
    def risk_factor_ids(self) -> list[str]:
        return [m.factor.id for m in self.risk_factors]

    def has_cause(self, *causes: str) -> bool:
        return any(m.factor.cause in causes for m in self.risk_factors)


def factor_name(kb: Knowledge, factor: RiskFactor, taken: frozenset[str]) -> str:
    """A risk factor's name, naming only the medicines this person takes when the factor
    covers several ("Primidone", not "Colchicine, phenobarbital, ... or topiramate")."""
    listed = factor.trigger.medication or []
    if len(listed) < 2:
        return factor.name
    return " and ".join(kb.medications[m].name for m in listed if m in taken)


def feature_facts(
    kb: Knowledge,
    record: PatientRecord,
    symptoms: Mapping[str, SymptomEntry],
    lab_bands: Mapping[str, str],
) -> frozenset[str]:
    """Every feature (differentials.yaml syntax) that holds for the record, except age_min,
    which is compared as a number."""
    facts = {f"symptom:{s}" for s in symptoms}
    facts |= {f"group:{kb.symptoms[s].group}" for s in symptoms}
    facts |= {f"onset:{e.onset}" for e in symptoms.values() if e.onset}
    facts |= {"course:progressing" for e in symptoms.values() if e.progressing}
    facts |= {f"condition:{c.id}" for c in record.conditions}
    facts |= {f"medication:{m.id}" for m in record.medications}
    facts |= {f"exposure:{e.id}" for e in record.exposures}
    facts |= {f"lab:{test}={band}" for test, band in lab_bands.items()}
    return frozenset(facts)


def matched_features(
    record: PatientRecord, facts: frozenset[str], features: list[str]
) -> list[str]:
    return [
        f
        for f in features
        if f in facts or (f.startswith("age_min:") and record.age_years >= float(f[8:]))
    ]


def differential_fit(
    record: PatientRecord, facts: frozenset[str], d: Differential
) -> tuple[str, list[str], list[str]]:
    """Rule differential.fit: good / partial / poor with the features behind it."""
    supports = matched_features(record, facts, d.supports)
    against = matched_features(record, facts, d.against)
    required = matched_features(record, facts, d.good_requires_any)
    if (
        all(s.startswith(("onset:", "age_min:")) for s in supports)
        or (d.requires_any and not matched_features(record, facts, d.requires_any))
        or matched_features(record, facts, d.ruled_out_by)
    ):
        # Rule differential.onset_alone: how symptoms began (sudden, gradual) or how old
        # the person is says what a presentation is not, never on its own what it is: a
        # stroke is no partial fit for ordinary strain because both are sudden, nor is
        # dementia for tingling because the person is 76. An alternative whose defining
        # feature is missing (diabetic neuropathy without diabetes) is poor too.
        fit = "poor"
    elif (
        len(supports) >= d.good_min
        and len(supports) > len(against)
        and (not d.good_requires_any or required)
    ):
        fit = "good"
    elif supports and len(supports) >= len(against):
        fit = "partial"
    else:
        fit = "poor"
    return fit, supports, against


def _expand(kb: Knowledge, ids: list[str]) -> set[str]:
    out: set[str] = set()
    # @weakness: any weakness; @deficit: any loss of nerve function (symptoms.yaml).
    sets = {"@weakness": kb.weakness_symptoms, "@deficit": kb.deficit_symptoms}
    for i in ids:
        out |= sets.get(i, {i})
    return out


def _new_enough(kb: Knowledge, s: SymptomEntry) -> bool:
    """A red-flag finding raises its flag when it began within the window or when
    nothing says when (triage.yaml red_flag_new_within_days); other findings always."""
    if kb.symptoms[s.id].role != "red_flag" or s.duration_weeks is None:
        return True
    return s.duration_weeks * 7 <= kb.triage.red_flag_new_within_days


def _red_flag(kb: Knowledge, flag: RedFlag, symptoms: dict[str, SymptomEntry]) -> bool:
    m = flag.match

    def ok(s: SymptomEntry, within: float | None) -> bool:
        if not _new_enough(kb, s):
            return False
        return within is None or (
            s.progressing is True and s.duration_weeks is not None and s.duration_weeks <= within
        )

    hits = [
        s
        for sid, s in symptoms.items()
        if sid in _expand(kb, m.any) and ok(s, m.progressing_within_weeks)
    ]
    if not hits:
        return False
    if m.with_any:
        others = [s for sid, s in symptoms.items() if sid in _expand(kb, m.with_any)]
        if m.with_progressing_or_sudden:
            others = [s for s in others if s.progressing is True or s.onset == "sudden"]
        if not others:
            return False
    return True


def _risk_factors(
    kb: Knowledge, record: PatientRecord
) -> tuple[list[MatchedRiskFactor], list[str]]:
    meds = {m.id: m for m in record.medications}
    conditions = {c.id for c in record.conditions}
    exposures = {e.id for e in record.exposures}
    matched: list[MatchedRiskFactor] = []
    short: list[str] = []
    for rf in kb.risk_factors.values():
        t = rf.trigger
        qualifier = ""
        if t.diet is not None and record.diet not in t.diet:
            continue
        if t.age_min is not None and record.age_years < t.age_min:
            continue
        if t.pregnant is not None and record.pregnant != t.pregnant:
            continue
        if t.breastfeeding is not None and record.breastfeeding != t.breastfeeding:
            continue
        if t.condition is not None and not conditions & set(t.condition):
            continue
        if t.exposure is not None and not exposures & set(t.exposure):
            continue
        if t.medication is not None:
            present = [meds[m] for m in t.medication if m in meds]
            if not present:
                continue
            if t.min_duration_months is not None:
                known = [m.duration_months for m in present if m.duration_months is not None]
                if known and max(known) < t.min_duration_months:
                    short.extend(m.id for m in present)
                    continue
                if not known:
                    qualifier = (
                        f"duration not recorded; the risk is with "
                        f"{t.min_duration_months / 12:g} years or more"
                    )
                else:
                    qualifier = f"{max(known):g} months"
            else:
                qualifier = ", ".join(
                    kb.medications[m.id].name.lower()
                    + (
                        f" for {m.duration_months:g} months"
                        if m.duration_months is not None
                        else ""
                    )
                    for m in present
                )
        matched.append(MatchedRiskFactor(rf, qualifier))
    return matched, short


def _ratings(record: PatientRecord) -> dict[str, list[SymptomRating]]:
    out: dict[str, list[SymptomRating]] = {}
    for r in sorted(record.symptom_ratings, key=lambda r: r.date):
        out.setdefault(r.id, []).append(r)
    return out


def _baselines(
    kb: Knowledge, ratings: Mapping[str, list[SymptomRating]], first_dose: dt.date | None
) -> dict[str, SymptomRating]:
    """Rule recovery.baseline: a symptom's rating at the start of the course is its latest
    rating on or before the first dose, else its earliest within the window after it
    (recovery.yaml ``baseline``)."""
    if first_dose is None:
        return {}
    limit = first_dose + dt.timedelta(days=kb.recovery.baseline.after_first_dose_days)
    out: dict[str, SymptomRating] = {}
    for sid, history in ratings.items():
        before = [r for r in history if r.date <= first_dose]
        after = [r for r in history if first_dose < r.date <= limit]
        if before:
            out[sid] = before[-1]
        elif after:
            out[sid] = after[0]
    return out


# Rule suspicion.strain_aching: the seed's strain is "localised soreness or aching", sudden
# and after an activity: an aching leg that began suddenly after exertion is that aching,
# not the gradual neuropathic ache of B12 (seed-weakness comparison table). Rest relieving
# it is not enough on its own (leg pain relieved by rest is also the pattern of
# claudication). Swelling or bruising after the exertion is the strain's own picture
# (the seed's table); without the exertion a swollen painful leg is a DVT until excluded
# (rule urgency.swollen_leg).
STRAIN = "muscle_strain"  # differentials.yaml: the seed's ordinary strain
STRAIN_ACHE = "leg_ache"
STRAIN_CONTEXT = "recent_overexertion"
SWELLING = "swelling_or_bruising"
STRAIN_SORENESS = "localized_muscle_soreness"
# Rule urgency.suspected_cancer_referral: difficulty swallowing is referred for urgent
# endoscopy (NICE NG12 1.2.1); without another nerve feature it is not B12's pattern.
DYSPHAGIA = "swallowing_difficulty"
# Rule next.bulbar_symptoms: swallowing and speech trouble together are a bulbar picture
# (motor neurone disease among its causes, NICE NG42): neurology.
BULBAR = frozenset({"swallowing_difficulty", "speech_difficulty"})
# The pains of a swollen leg (rule urgency.swollen_leg).
PAINS = frozenset({STRAIN_ACHE, STRAIN_SORENESS, "burning_pain"})


def swollen_painful_leg(symptoms: Mapping[str, SymptomEntry]) -> bool:
    """Rule urgency.swollen_leg: swelling with pain or aching, unless it is the seed's
    strain picture (local muscle soreness after exertion), which NG158's Wells score counts
    as another diagnosis at least as likely: strain features alone never start a DVT
    work-up, while an aching leg that swells is a DVT until excluded."""
    strain_picture = STRAIN_CONTEXT in symptoms and STRAIN_SORENESS in symptoms
    return SWELLING in symptoms and bool(PAINS & symptoms.keys()) and not strain_picture


def _strain_ache(symptoms: Mapping[str, SymptomEntry]) -> bool:
    ache = symptoms.get(STRAIN_ACHE)
    return ache is not None and ache.onset == "sudden" and STRAIN_CONTEXT in symptoms


def _with_result_diagnoses(kb: Knowledge, record: PatientRecord) -> PatientRecord:
    """Rule findings.result_as_diagnosis: a result that is itself a diagnosis (positive
    intrinsic factor antibodies) counts exactly as the condition recorded."""
    held = {c.id for c in record.conditions}
    found = [
        cid
        for lab in record.labs
        if isinstance(lab.value, str)
        and (cid := kb.labs[lab.test].diagnoses.get(lab.value.lower())) is not None
        and cid not in held
    ]
    if not found:
        return record
    added = [ConditionEntry(id=cid) for cid in dict.fromkeys(found)]
    return record.model_copy(update={"conditions": [*record.conditions, *added]})


def find(kb: Knowledge, record: PatientRecord, as_of: dt.date) -> Findings:
    record = _with_result_diagnoses(kb, record)
    symptoms = {s.id: s for s in record.symptoms}
    # The nerve features that count as involvement at this age (a child's seizures do).
    nerves = (
        kb.neurological_symptoms_young
        if record.age_years < kb.triage.adult_from_years
        else kb.neurological_symptoms
    )
    # Rule findings.diagnosis_as_symptoms: a recorded neuropathy or myelopathy counts
    # exactly as its symptoms do (conditions.yaml presents_as), with no tempo of its own.
    for c in record.conditions:
        for sid in kb.conditions[c.id].presents_as:
            symptoms.setdefault(sid, SymptomEntry(id=sid))
    b12 = [s for s in symptoms if kb.symptoms[s].role == "b12"]
    aching = _strain_ache(symptoms)
    strain_view = symptoms  # the same mapping unless an ache is re-read as strain
    if aching:
        strain_view = dict(symptoms)
        ache = strain_view.pop(STRAIN_ACHE)
        strain_view.setdefault(STRAIN_SORENESS, ache.model_copy(update={"id": STRAIN_SORENESS}))
    strain_fit, _, _ = differential_fit(
        record, feature_facts(kb, record, strain_view, {}), kb.differentials[STRAIN]
    )
    non_motor_neuro = [
        s
        for s in b12
        if s in nerves and kb.symptoms[s].group != "motor" and not (aching and s == STRAIN_ACHE)
    ]
    # Rule suspicion.strain_pattern: sudden weakness with the seed's strain features and no
    # sensory, balance, reflex, visual or cognitive sign is ordinary strain, not B12.
    strain = (
        strain_fit == "good"
        and not non_motor_neuro
        and not any(symptoms[s].onset == "gradual" for s in b12 if kb.symptoms[s].weakness)
    )
    if strain:
        b12 = [s for s in b12 if not kb.symptoms[s].weakness and not (aching and s == STRAIN_ACHE)]
    others = [s for s in b12 if s in nerves and s != DYSPHAGIA]
    dysphagia = symptoms.get(DYSPHAGIA)
    # NG12 1.2.1 refers anyone with dysphagia; alone, it is not counted as B12 neuropathy.
    cancer_pathway = (
        dysphagia is not None
        and dysphagia.onset != "sudden"
        and record.age_years >= kb.triage.adult_from_years
    )
    if cancer_pathway and not others:
        b12 = [s for s in b12 if s != DYSPHAGIA]
    # A swollen painful leg is a DVT until excluded (NG158): its pain is not counted as B12
    # neuropathy unless a nerve deficit comes with it.
    if swollen_painful_leg(symptoms) and not any(
        kb.symptoms[s].deficit for s in b12 if s in nerves
    ):
        b12 = [s for s in b12 if s not in PAINS]
    neuro = [s for s in b12 if s in nerves]
    # The findings the strain pattern accounts for raise no alarm; a severe one always does.
    by_strain = frozenset(
        sid
        for sid, e in symptoms.items()
        if ((strain and kb.symptoms[sid].weakness) or (aching and sid == STRAIN_ACHE))
        and not triage.severe(kb, e)
    )
    named = [
        Alarm(
            id=f.id,
            level="emergency",
            rule="red_flag.match",
            name=f.name,
            symptoms=(),
            sources=tuple(f.sources),
        )
        for f in kb.red_flags.values()
        if _red_flag(kb, f, symptoms)
    ]
    alarms = sorted(
        [*named, *triage.alarms(kb, record, symptoms, by_strain)],
        key=lambda a: triage.rank(kb, a.level),
    )
    red_flags = [a for a in alarms if a.level == "emergency"]
    risk_factors, short = _risk_factors(kb, record)
    doses = sorted(record.b12_treatment, key=lambda d: d.date)
    ratings = _ratings(record)
    baselines = _baselines(kb, ratings, doses[0].date if doses else None)
    # Rule treatment.neurological_course: a course that began with neurological involvement
    # stays neurological (its regimen and maintenance interval) when the nerve symptoms
    # improve or resolve: the improvement came with treatment and does not change how the
    # course began.
    course_neuro = [sid for sid, r in baselines.items() if sid in nerves and rank(r.rating) > 0]
    first = doses[0].date if doses else None

    def since_first(sid: str) -> list[SymptomRating]:
        return [r for r in ratings.get(sid, []) if first is None or r.date >= first]

    # Worse: recorded as progressing, or rated higher now than at its best since the
    # first dose (severe, then mild, then moderate is coming back).
    worsening = [
        sid
        for sid in neuro
        if symptoms[sid].progressing is True
        or (
            bool(since_first(sid))
            and rank(ratings[sid][-1].rating) > min(rank(r.rating) for r in since_first(sid))
        )
    ]
    # New during the course: began after the first dose (its duration says so), or rated
    # none at the start of the course and above none now.
    for sid in neuro:
        entry, base = symptoms[sid], baselines.get(sid)
        began_after = (
            first is not None
            and entry.duration_weeks is not None
            # In whole days: a duration in weeks to one place is a day out either way.
            and round(entry.duration_weeks * 7) < (as_of - first).days
        )
        unrated_before = base is not None and rank(base.rating) == 0
        if (began_after or unrated_before) and sid not in worsening:
            worsening.append(sid)
    # Back, for a lapsed course: worse, or with nothing to say it is not (no ratings since
    # the first dose and not recorded as stable).
    returning = [
        sid
        for sid in neuro
        if sid in worsening or (not since_first(sid) and symptoms[sid].progressing is not False)
    ]
    return Findings(
        patient=record,
        as_of=as_of,
        under_16=record.age_years < kb.triage.adult_from_years,
        symptoms=symptoms,
        b12_symptoms=b12,
        neuro_symptoms=neuro,
        neuro_groups=frozenset(kb.symptoms[s].group for s in neuro),
        neurological=bool(neuro),
        specific_neurological=any(kb.symptom_groups[kb.symptoms[s].group].specific for s in neuro),
        strain_pattern=strain,
        strain_symptoms=strain_view,
        cancer_pathway=cancer_pathway,
        alarms=alarms,
        explained_by_strain=by_strain,
        red_flags=red_flags,
        risk_factors=risk_factors,
        short_acid_suppression=short,
        conditions=frozenset(c.id for c in record.conditions),
        medications=frozenset(m.id for m in record.medications),
        exposures=frozenset(e.id for e in record.exposures),
        doses=doses,
        ratings=ratings,
        baselines=baselines,
        course_neuro_symptoms=course_neuro,
        neurological_course=bool(neuro) or bool(course_neuro),
        worsening_neuro=worsening,
        returning_neuro=returning,
    )
