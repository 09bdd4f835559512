"""``b12dx record``: what happened to a followed patient, a lab result, a dose given or a
symptom rating, each checked as the engine would check it before it is stored, and
``entered-in-error``, the undo of any of them (the web's "entered in error": the entry is
kept with why, and left out of the assessment).

Each recording prints the patient's name beside what was recorded, and the command that
undoes it. A dose's batch and (for an injection) site are given or said to be not
recorded, as on the web's forms (``followup_recorded.needed_batch_and_site``)."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from b12dx.cli import followup_work as base
from b12dx.cli.followup_options import (
    DateOption,
    DbOption,
    PatientArg,
    PracticeOption,
)
from b12dx.errors import B12dxError, InputError
from b12dx.knowledge.wording import unit_words

record_app = typer.Typer(
    rich_markup_mode=None,
    help="Record what happened to a patient: a lab result, a dose given, a symptom rating.",
    no_args_is_help=True,
)

LAB_OPTIONS = {
    "test": "--test",
    "lab": "--test",
    "value": "--value",
    "unit": "--unit",
    "date": "--date",
    "reference_low": "--reference-low",
    "reference_high": "--reference-high",
}
DOSE_OPTIONS = {
    "date": "--date",
    "drug": "--drug",
    "dose": "--dose",
    "route": "--route",
    "given_by": "--given-by",
    "batch": "--batch",
    "site": "--site",
}
NOT_RECORDED_HELP = "Say that the {} is not recorded (else --{} is required{})."
RATING_OPTIONS = {"date": "--date", "symptom": "--symptom", "rating": "--rating"}


@record_app.command("lab")
def record_lab(
    patient_id: PatientArg,
    test: Annotated[str, typer.Option("--test", help="Test id, e.g. total_b12, mma, mcv.")],
    value: Annotated[str, typer.Option("--value", help="A number, or positive / negative.")],
    date: DateOption,
    unit: Annotated[
        str | None, typer.Option("--unit", help="The result's unit, e.g. pg/mL, pmol/L.")
    ] = None,
    reference_low: Annotated[
        float | None, typer.Option("--reference-low", help="The lab's lower limit (same unit).")
    ] = None,
    reference_high: Annotated[
        float | None, typer.Option("--reference-high", help="The lab's upper limit (same unit).")
    ] = None,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Record a lab result (checked as the engine checks it: test, unit, plausible value)."""
    from b12dx.store import entries
    from b12dx.web.followup_recorded import ref

    day = base.required_date(date, "--date")
    with base.patient_work(db, practice, patient_id, LAB_OPTIONS) as (c, p):
        entry = entries.add_lab(
            c.session,
            c.kb,
            c.actor,
            c.now,
            p,
            test=test,
            value=value,
            unit=unit,
            taken_on=day,
            reference_low=reference_low,
            reference_high=reference_high,
        )
        shown = (
            f"{entry.value_number:g} {unit_words(entry.unit)}".strip()
            if entry.value_number is not None
            else entry.value_text
        )
        line = f"Recorded for {p.id} ({p.name}): {c.kb.labs[test].name} {shown} on {day}."
        undo = undo_line(p.id, ref("lab", entry.id), db, practice)
    base.out(line)
    base.out(undo)


@record_app.command("dose")
def record_dose(
    patient_id: PatientArg,
    date: DateOption,
    drug: Annotated[
        str, typer.Option("--drug", help="hydroxocobalamin, cyanocobalamin or methylcobalamin.")
    ],
    dose: Annotated[
        str, typer.Option("--dose", help='The amount, e.g. "1 mg", "1000 micrograms".')
    ],
    route: Annotated[str, typer.Option("--route", help="im, oral, sc, iv, sublingual or nasal.")],
    given_by: Annotated[
        str | None, typer.Option("--given-by", help="Who gave it; default the login.")
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option("--batch", help="The batch (lot) number; or --batch-not-recorded."),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(
            "--site",
            help='The injection site, e.g. "left deltoid"; or --site-not-recorded (an '
            "injection only).",
        ),
    ] = None,
    batch_not_recorded: Annotated[
        bool,
        typer.Option("--batch-not-recorded", help=NOT_RECORDED_HELP.format("batch", "batch", "")),
    ] = False,
    site_not_recorded: Annotated[
        bool,
        typer.Option(
            "--site-not-recorded",
            help=NOT_RECORDED_HELP.format("site", "site", " for an injection"),
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Record it although it does not fit b12dx's regimens (an amount none gives, "
            "or sooner after another dose than any gives), once checked.",
        ),
    ] = False,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Record a dose of B12 given, and say when the next one is due.

    The batch number, and for an injection the site, are given (--batch, --site) or said
    to be not recorded (--batch-not-recorded, --site-not-recorded). A dose that does not
    fit the knowledge base's regimens for the drug and route is refused, saying why,
    unless --force."""
    from b12dx.cli.followup_view import next_dose
    from b12dx.store import entries, snapshots
    from b12dx.web.followup_recorded import WHAT, needed_batch_and_site, ref

    day = base.required_date(date, "--date")
    with base.patient_work(db, practice, patient_id, DOSE_OPTIONS) as (c, p):
        batch, site = needed_batch_and_site(
            c.kb,
            route,
            batch,
            site,
            batch_not_recorded=batch_not_recorded,
            site_not_recorded=site_not_recorded,
            accepted=lambda f: f"--{f} and the {WHAT[f]}, or --{f}-not-recorded",
        )
        try:
            entry = entries.add_dose(
                c.session,
                c.actor,
                c.now,
                p,
                given_on=day,
                drug=drug,
                dose=dose,
                route=route,
                given_by=given_by,
                kb=c.kb,
                force=force,
                batch=batch,
                site=site,
            )
        except entries.UnusualDose as exc:
            raise exc.confirm_with("--force") from None
        line = (
            f"Recorded for {p.id} ({p.name}): {drug} {entry.dose_mg:g} mg {route.upper()} on "
            f"{day}, given by {entry.given_by}"
            + (f", batch {entry.batch}" if entry.batch else "")
            + (f", {entry.site}" if entry.site else "")
            + "."
        )
        undo = undo_line(p.id, ref("dose", entry.id), db, practice)
        try:  # the dose is kept even when the record cannot be assessed today
            a = snapshots.current(c.kb, p, c.today).assessment
            after = next_dose(a, max(d.given_on for d in p.doses))
        except B12dxError as exc:
            after = f"When the next dose is due could not be worked out: {exc}"
    base.out(line)
    base.out(after)
    base.out(undo)


@record_app.command("symptom")
def record_symptom(
    patient_id: PatientArg,
    symptom: Annotated[
        str, typer.Option("--symptom", help="Symptom id (b12dx knowledge symptoms).")
    ],
    rating: Annotated[str, typer.Option("--rating", help="none, mild, moderate or severe.")],
    date: DateOption,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Record how a symptom is on a day (none records that it has gone)."""
    from b12dx.store import entries
    from b12dx.web.followup_recorded import ref

    day = base.required_date(date, "--date")
    with base.patient_work(db, practice, patient_id, RATING_OPTIONS) as (c, p):
        entry = entries.add_rating(
            c.session, c.kb, c.actor, c.now, p, symptom=symptom, rating=rating, rated_on=day
        )
        line = f"Recorded for {p.id} ({p.name}): {c.kb.symptoms[symptom].name} {rating} on {day}."
        undo = undo_line(p.id, ref("rating", entry.id), db, practice)
    base.out(line)
    base.out(undo)


def undo_line(patient_id: str, entry: str, db: str | None, practice: str | None) -> str:
    """The command that undoes what was just recorded, ready to run as printed."""
    from b12dx.web.followup_recorded import UNDO_REASON

    argv = ["b12dx", "record", "entered-in-error", patient_id, entry, "--reason", UNDO_REASON]
    argv += [*(["--db", db] if db else []), *(["--practice", practice] if practice else [])]
    return f"To undo: {shlex.join(argv)}"


@record_app.command("entered-in-error")
def record_entered_in_error(
    patient_id: PatientArg,
    entry: Annotated[
        str,
        typer.Argument(
            metavar="ENTRY",
            help="The entry, as the command that recorded it printed it: lab:ID, rating:ID "
            "or dose:ID (the ids are in `b12dx patient show ID --json`'s audit trail).",
        ),
    ],
    reason: Annotated[
        str, typer.Option("--reason", help="Why it is wrong, in 3 to 200 characters.")
    ],
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Mark a lab result, symptom rating or dose as entered in error (the undo).

    Nothing is deleted: the entry is kept, with why and by whom, for the audit trail and
    the saved assessments that used it, and is left out of the patient's record from
    now on."""
    from b12dx.store import entries
    from b12dx.web.followup_recorded import recorded, ref

    kind, _, number = entry.strip().partition(":")
    if kind not in entries.VOIDABLE or not number.isdigit():
        raise InputError.single(
            "ENTRY", f"{entry!r} is not an entry", "lab:ID, rating:ID or dose:ID, e.g. dose:12"
        )
    names = {"reason": "--reason", "entry": "ENTRY", "kind": "ENTRY"}
    with base.patient_work(db, practice, patient_id, names) as (c, p):
        shown = recorded(c.session, c.kb, p, ref(kind, int(number)))
        entries.void_entry(
            c.session, c.actor, c.now, p, kind=kind, entry_id=int(number), reason=reason
        )
        what = "; ".join(shown.lines) if shown else entry
        line = (
            f"Marked entered in error for {p.id} ({p.name}): {kind} {what}. It is kept for "
            "the audit trail and left out of the assessment."
        )
    base.out(line)
