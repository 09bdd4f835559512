"""The patient check's symptom hints read at a reading age of 9 to 11.

The patient check (``/check``) shows each symptom's ``feels_like`` text as a hint under its
plain name. The NHS.UK content style guide asks for health information that people with a
reading age of 9 to 11 can follow: short sentences, everyday words, "you", and no medical
jargon, or jargon explained where it cannot be avoided. Many people who read the check are
unwell, worried or reading in a second language, so a hint they cannot follow is a question
they answer wrongly.

These tests hold the shipped hints to that standard, so a new or reworded hint that slips
back into clinical language fails here:

* every sentence has at most 20 words (the guide's aim is 15 or fewer);
* the Flesch reading ease of the hints averages 70 or more (plain English) and no hint
  scores below 50 (fairly difficult, about age 15 to 17);
* no hint uses a word from a list of clinical jargon;
* every hint speaks to the reader ("you", "your");
* a clinical word a hint does keep is explained in the same hint.

The Flesch score uses a small syllable-counting rule of thumb written here (no reading-age
library is installed). It is not exact for every word, so the tests also check that it
rates a known hard sentence as hard and a known easy one as easy: if the rule of thumb
drifts, the tests fail rather than pass everything.
"""

from __future__ import annotations

import re
import statistics

import pytest

from b12dx.knowledge import load_knowledge

KB = load_knowledge()
HINTS: dict[str, str] = {sid: s.feels_like for sid, s in KB.symptoms.items()}

MAX_SENTENCE_WORDS = 20
MIN_AVERAGE_EASE = 70.0  # plain English (NHS.UK reading age 9 to 11)
MIN_HINT_EASE = 50.0  # below 50 is "fairly difficult" or worse

# Clinical words a hint must not use. Each entry is a word start, so "neuropath" also
# catches "neuropathy" and "neuropathic". Everyday words replace them: "feel" for
# "sensation", "arms and legs" for "limbs", "walking" for "gait".
JARGON = (
    "sensation",
    "extremit",
    "gait",
    "proximal",
    "distal",
    "bilateral",
    "unilateral",
    "progressive",
    "ataxi",
    "paraesthe",
    "paresthe",
    "dysaesthe",
    "neuropath",
    "cognitive",
    "proprioce",
    "peripheral",
    "limb",
    "examination",
    "involvement",
    "deficien",
    "dysfunction",
    "articulat",
    "insomnia",
    "presentation",
    "impaired",
    "persistent",
    "overexertion",
    "spasticity",
    "atrophy",
    "glossitis",
    "dysphagia",
    "dysarthria",
    "diplopia",
    "tinnitus",
    "pallor",
    "fatigue",
    "infant",
    "urine",
    "remitting",
    "relapsing",
    "hemiparesis",
    "myelin",
)
_JARGON = re.compile(r"\b(?:" + "|".join(JARGON) + r")", re.IGNORECASE)

# Clinical words a hint may keep only if it explains them: the word, and a phrase the
# explanation uses.
EXPLAINED = {
    "anaemia": "red blood cells",
    "spinal cord": "backbone",
    "optic nerve": "eye",
    "tuning fork": "metal",
    "dementia": "memory",
    "multiple sclerosis": "brain",
    "milestones": "skills",
    "reflexes": "tap",
    "seizures": "fits",
    "schizophrenia": "mental health",
    "constipated": "poo",
    "diarrhoea": "poo",
}

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """The text's sentences, split after a full stop, question or exclamation mark."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def words(text: str) -> list[str]:
    """The text's words: "short-term" is two, "B12" and "don't" one each."""
    return _WORD.findall(text)


def syllables(word: str) -> int:
    """A rule-of-thumb syllable count: groups of vowels, less a silent final "e" or "es"
    and an "ed" that is not said as its own syllable; never less than one."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return len(word)  # a number: about a syllable a digit
    if len(w) <= 3:
        return 1
    w = re.sub(r"(?:[^laeiouy]es|[^laeiouy]e)$", "", w)
    w = re.sub(r"(?<![td])ed$", "", w)
    w = re.sub(r"^y", "", w)
    return max(1, len(re.findall(r"[aeiouy]{1,2}", w)))


def flesch_reading_ease(text: str) -> float:
    """206.835 - 1.015 x (words per sentence) - 84.6 x (syllables per word)."""
    found = words(text)
    n_sentences = max(1, len(sentences(text)))
    n_syllables = sum(syllables(w) for w in found)
    return 206.835 - 1.015 * len(found) / n_sentences - 84.6 * n_syllables / len(found)


# --- the measure itself can fail -----------------------------------------------------


@pytest.mark.parametrize(
    ("word", "count"),
    [
        ("you", 1),
        ("feel", 1),
        ("walking", 2),
        ("tingling", 2),
        ("little", 2),
        ("wanted", 2),
        ("numbness", 2),
        ("unsteady", 3),
        ("examination", 5),
        ("bilateral", 4),
    ],
)
def test_syllable_rule_of_thumb_counts_common_words(word: str, count: int) -> None:
    assert syllables(word) == count


def test_a_hard_clinical_sentence_scores_below_the_floor() -> None:
    hard = (
        "Progressive bilateral distal paraesthesia with impaired proprioception indicates "
        "subacute combined degeneration of the spinal cord secondary to cobalamin deficiency."
    )
    assert flesch_reading_ease(hard) < MIN_HINT_EASE
    assert flesch_reading_ease(hard) < 0  # graduate level: far below the floor


def test_a_plain_sentence_scores_as_plain_english() -> None:
    assert flesch_reading_ease("Your feet feel numb. You may trip or fall.") > 90


def test_a_long_sentence_is_counted_as_one() -> None:
    long = "You " + " and ".join(["walk"] * 12) + "."
    assert len(sentences(long)) == 1
    assert len(words(long)) > MAX_SENTENCE_WORDS


def test_the_jargon_check_catches_a_clinical_hint() -> None:
    assert _JARGON.search("A clumsy, staggering gait from sensory ataxia.")
    assert _JARGON.search("Peripheral neuropathy in the lower limbs.")
    assert not _JARGON.search("You walk in a clumsy, staggering way.")


# --- the shipped hints ---------------------------------------------------------------


def test_every_symptom_has_a_hint() -> None:
    assert HINTS
    empty = sorted(sid for sid, hint in HINTS.items() if not hint.strip())
    assert not empty, f"symptoms with no hint: {empty}"


@pytest.mark.parametrize("sid", sorted(HINTS))
def test_hint_sentences_are_short(sid: str) -> None:
    long = [s for s in sentences(HINTS[sid]) if len(words(s)) > MAX_SENTENCE_WORDS]
    assert not long, f"{sid}: sentences over {MAX_SENTENCE_WORDS} words: {long}"


@pytest.mark.parametrize("sid", sorted(HINTS))
def test_hint_is_not_hard_to_read(sid: str) -> None:
    ease = flesch_reading_ease(HINTS[sid])
    assert ease >= MIN_HINT_EASE, f"{sid}: Flesch reading ease {ease:.0f}: {HINTS[sid]!r}"


def test_hints_average_plain_english() -> None:
    scores = {sid: flesch_reading_ease(hint) for sid, hint in HINTS.items()}
    average = statistics.mean(scores.values())
    hardest = sorted(scores, key=scores.__getitem__)[:5]
    assert average >= MIN_AVERAGE_EASE, (
        f"average Flesch reading ease {average:.1f} < {MIN_AVERAGE_EASE}; hardest: "
        + ", ".join(f"{sid} ({scores[sid]:.0f})" for sid in hardest)
    )


@pytest.mark.parametrize("sid", sorted(HINTS))
def test_hint_has_no_jargon(sid: str) -> None:
    found = [m.group(0) for m in _JARGON.finditer(HINTS[sid])]
    assert not found, f"{sid}: jargon {found} in {HINTS[sid]!r}"


@pytest.mark.parametrize("sid", sorted(HINTS))
def test_hint_speaks_to_the_reader(sid: str) -> None:
    said = {w.lower() for w in words(HINTS[sid])}
    assert said & {"you", "your", "yourself"}, f"{sid}: not addressed to 'you': {HINTS[sid]!r}"


@pytest.mark.parametrize("sid", sorted(HINTS))
def test_clinical_words_kept_are_explained(sid: str) -> None:
    hint = HINTS[sid].lower()
    unexplained = [
        term for term, explanation in EXPLAINED.items() if term in hint and explanation not in hint
    ]
    assert not unexplained, f"{sid}: {unexplained} not explained in {HINTS[sid]!r}"
