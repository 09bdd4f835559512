"""``b12dx patient ...``, ``b12dx record ...``, ``b12dx due``, ``b12dx backup`` and
``b12dx restore``: following people over time in the follow-up database
(``b12dx.store``).

Every command opens the database given by ``--db`` (else ``B12DX_DATABASE_URL``, else
the file in the user's data directory) and works as ``cli:<login>`` in the local
practice, or the one ``--practice`` names; each change is one transaction with its audit
entry, so on any error nothing is written (``followup_work``). The commands read and
print; what is recorded is checked by the store and what is decided is the engine's.
The ``record`` commands are in ``followup_record``, the options they share in
``followup_options``.

Errors follow the command line's convention (``b12dx.cli.app.main``): exit 2 and one
message naming the option and what it accepts.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

import typer

from b12dx.cli import followup_work as base
from b12dx.cli.followup_options import (
    AsOfOption,
    DbOption,
    ForceOption,
    JsonOption,
    PatientArg,
    PracticeOption,
    ProfileOption,
)
from b12dx.cli.followup_record import record_app
from b12dx.errors import FieldError, InputError

patient_app = typer.Typer(
    rich_markup_mode=None,
    help="People followed over time: add, list, show, update, assess, export, import.",
    no_args_is_help=True,
)

# The store names fields as the record does; the command line names its options.
ADD_OPTIONS = {
    "name": "--name",
    "birth_date": "--birth-date",
    "sex": "--sex",
    "diet": "--diet",
    "ethnicity": "--ethnicity",
    "condition": "--condition",
    "nhs_number": "--nhs-number",
    "local_number": "--local-number",
}


# -- patient ---------------------------------------------------------------------------


@patient_app.command("add")
def patient_add(
    name: Annotated[str, typer.Option("--name", help="The name the clinic knows them by.")],
    birth_date: Annotated[str, typer.Option("--birth-date", help="YYYY-MM-DD.")],
    sex: Annotated[str, typer.Option("--sex", help="female, male, other or unknown.")],
    condition: Annotated[
        list[str] | None,
        typer.Option(
            "--condition",
            help="A condition id (repeat for more); b12dx knowledge conditions lists them.",
        ),
    ] = None,
    diet: Annotated[
        str, typer.Option("--diet", help="omnivore, vegetarian, vegan or restricted.")
    ] = "omnivore",
    ethnicity: Annotated[
        str,
        typer.Option("--ethnicity", help="black_african_or_caribbean, other or unknown."),
    ] = "unknown",
    profile: ProfileOption = None,
    nhs_number: Annotated[
        str | None, typer.Option("--nhs-number", help="10 digits; the check digit is checked.")
    ] = None,
    local_number: Annotated[
        str | None, typer.Option("--local-number", help="The practice's own record number.")
    ] = None,
    add_anyway: Annotated[
        bool,
        typer.Option(
            "--add-anyway",
            help="Add although a patient of the same name and birth date is held (a namesake).",
        ),
    ] = False,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Add a patient; prints only the new id (for scripts). A patient with the same NHS or
    local number, or (without --add-anyway) the same name and birth date, is refused
    naming the patient already held."""
    from b12dx.store import patients

    born = base.date_option(birth_date, "--birth-date")
    assert born is not None
    with base.work(db, practice) as c, base.options(ADD_OPTIONS | {"profile": "--profile"}):
        p = patients.add(
            c.session,
            c.kb,
            c.actor,
            c.now,
            name=name,
            birth_date=born,
            sex=sex,
            diet=diet,
            ethnicity=ethnicity,
            conditions=condition or [],
            profile=profile,
            nhs_number=nhs_number,
            local_number=local_number,
            namesake_ok=add_anyway,
        )
        pid = p.id
    base.out(pid)


@patient_app.command("list")
def patient_list(
    json_out: JsonOption = False, db: DbOption = None, practice: PracticeOption = None
) -> None:
    """The practice's patients, with their latest stored assessment."""
    from b12dx.cli.followup_view import patient_row, render_list
    from b12dx.store import patients, snapshots

    with base.work(db, practice) as c:
        people = patients.all_in_practice(c.session, c.actor)
        last = snapshots.latest(c.session, [p.id for p in people])
        rows = [patient_row(p, last.get(p.id), c.today) for p in people]
    if json_out:
        base.out(json.dumps(rows, indent=2))
    else:
        render_list(base.console(), rows)


@patient_app.command("show")
def patient_show(
    patient_id: PatientArg,
    json_out: JsonOption = False,
    as_of: AsOfOption = None,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """The record, its history (assessments kept, audit trail) and today's assessment.

    The assessment is made as of today (or --as-of) and not stored; the record and the
    history are shown whole."""
    from b12dx.cli import followup_view as view
    from b12dx.store import audit, snapshots

    with base.patient_work(db, practice, patient_id) as (c, p):
        when = base.as_of_for(as_of, c, p.birth_date)
        assessment = snapshots.current(c.kb, p, when).assessment
        kept = [
            view.snapshot_json(s, snapshots.planned(c.session, s))
            for s in snapshots.history(c.session, p)
        ]
        trail = [view.audit_json(e) for e in audit.entries(c.session, c.actor.practice_id, p.id)]
        data = view.patient_json(p, when)
        doses = list(p.doses)
        kb = c.kb
    if json_out:
        out = {
            "patient": data,
            "history": {"assessments": kept, "audit": trail},
            "assessment": assessment.model_dump(mode="json"),
        }
        base.out(json.dumps(out, indent=2))
        return
    from b12dx.cli.report import render

    console = base.console()
    view.render_patient(console, kb, data, kept, trail, doses)
    render(assessment, console)


def _which(options: dict[str, list[str]]) -> Callable[[FieldError], str]:
    """The option whose value a message quotes (``'metformin' is not ...``)."""

    def name(e: FieldError) -> str:
        for option, values in options.items():
            if any(repr(v) in e.message for v in values):
                return option
        return " / ".join(options)

    return name


@patient_app.command("update")
def patient_update(
    patient_id: PatientArg,
    diet: Annotated[
        str | None, typer.Option("--diet", help="omnivore, vegetarian, vegan, restricted.")
    ] = None,
    pregnant: Annotated[
        bool | None, typer.Option("--pregnant/--not-pregnant", help="Pregnant now, or no longer.")
    ] = None,
    breastfeeding: Annotated[
        bool | None,
        typer.Option("--breastfeeding/--not-breastfeeding", help="Breastfeeding now, or not."),
    ] = None,
    ethnicity: Annotated[
        str | None,
        typer.Option("--ethnicity", help="black_african_or_caribbean, other or unknown."),
    ] = None,
    add_condition: Annotated[
        list[str] | None, typer.Option("--add-condition", help="Condition id (repeatable).")
    ] = None,
    remove_condition: Annotated[
        list[str] | None, typer.Option("--remove-condition", help="Condition id (repeatable).")
    ] = None,
    egfr: Annotated[
        float | None,
        typer.Option("--egfr", help="eGFR in mL/min/1.73m2 (with chronic_kidney_disease)."),
    ] = None,
    start_medication: Annotated[
        str | None, typer.Option("--start-medication", help="Medication id now taken.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="When that medicine was started (YYYY-MM-DD).")
    ] = None,
    stop_medication: Annotated[
        str | None, typer.Option("--stop-medication", help="Medication id no longer taken.")
    ] = None,
    on: Annotated[
        str | None, typer.Option("--on", help="When that medicine was stopped (YYYY-MM-DD).")
    ] = None,
    add_exposure: Annotated[
        list[str] | None, typer.Option("--add-exposure", help="Exposure id (repeatable).")
    ] = None,
    end_exposure: Annotated[
        list[str] | None, typer.Option("--end-exposure", help="Exposure id (repeatable).")
    ] = None,
    profile: ProfileOption = None,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Change what is recorded about the person (each change is audited)."""
    from b12dx.store import patients

    if since is not None and start_medication is None:
        raise InputError.single("--since", "goes with --start-medication ID")
    if on is not None and stop_medication is None:
        raise InputError.single("--on", "goes with --stop-medication ID")
    if stop_medication is not None and on is None:
        raise InputError.single(
            "--on", "is required with --stop-medication", "the day it was stopped, YYYY-MM-DD"
        )
    started = base.date_option(since, "--since")
    stopped = base.date_option(on, "--on")
    names: base.Rename = {
        "diet": "--diet",
        "ethnicity": "--ethnicity",
        "egfr": "--egfr",
        "since": "--since",
        "stopped": "--on",
        "profile": "--profile",
        "pregnant": "--pregnant",
        "breastfeeding": "--breastfeeding",
        "condition": _which(
            {"--add-condition": add_condition or [], "--remove-condition": remove_condition or []}
        ),
        "medication": _which(
            {
                "--start-medication": [start_medication] if start_medication else [],
                "--stop-medication": [stop_medication] if stop_medication else [],
            }
        ),
        "exposure": _which(
            {"--add-exposure": add_exposure or [], "--end-exposure": end_exposure or []}
        ),
    }
    with base.patient_work(db, practice, patient_id, names) as (c, p):
        changed = patients.update(
            c.session,
            c.kb,
            c.actor,
            c.now,
            p,
            diet=diet,
            ethnicity=ethnicity,
            pregnant=pregnant,
            breastfeeding=breastfeeding,
            profile=profile,
            add_conditions=add_condition or [],
            remove_conditions=remove_condition or [],
            egfr=egfr,
            start_medications=[(start_medication, started)] if start_medication else [],
            stop_medications=[(stop_medication, stopped)] if stop_medication and stopped else [],
            add_exposures=add_exposure or [],
            end_exposures=end_exposure or [],
        )
        pid = p.id
    if not changed:
        base.out(f"{pid}: nothing changed")
        return
    parts = [f"{k.replace('_', ' ')}: {json.dumps(v)}" for k, v in changed.items()]
    base.out(f"{pid} updated: " + "; ".join(parts))


@patient_app.command("assess")
def patient_assess(
    patient_id: PatientArg,
    as_of: AsOfOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the contract's assessment JSON only.")
    ] = False,
    profile: ProfileOption = None,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Assess the patient and keep the result (an immutable snapshot with its plan).

    The history as of today (or --as-of) goes through the engine; the assessment, the
    versions that made it and the dose schedule it plans are stored for good."""
    from b12dx.store import snapshots

    with base.patient_work(db, practice, patient_id) as (c, p):
        when = base.as_of_for(as_of, c, p.birth_date)
        snap, a = snapshots.save(c.session, c.kb, c.actor, c.now, p, when, profile)
        saved = (
            f"Assessment {snap.id} of {p.id} as of {when} kept (engine {a.engine_version}, "
            f"knowledge {a.knowledge_version}, profile {a.profile})."
        )
    if json_out:
        sys.stderr.write(saved + "\n")
        base.out(a.model_dump_json(indent=2))
        return
    from b12dx.cli.report import render

    base.out(saved)
    render(a, base.console())


@patient_app.command("export")
def patient_export(
    patient_id: PatientArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the Bundle here; default standard output.")
    ] = None,
    force: ForceOption = False,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """The patient as a FHIR R4 Bundle (type collection).

    Patient, Condition, MedicationStatement, Observation (labs, symptom ratings,
    exposures, pregnancy) and MedicationAdministration resources; the export is audited."""
    from b12dx.cli.io import output_file
    from b12dx.store import audit
    from b12dx.store.bundle import export_bundle

    if out is not None:
        out = output_file(out, "--out", force)

    with base.patient_work(db, practice, patient_id) as (c, p):
        bundle = export_bundle(c.kb, p, c.now)
        text = json.dumps(bundle, indent=2) + "\n"
        audit.record(
            c.session,
            c.actor,
            c.now,
            "export",
            "patient",
            p.id,
            p.id,
            {"format": "FHIR R4 Bundle", "resources": len(bundle["entry"])},
        )
        pid, count = p.id, len(bundle["entry"])
        if out is not None:  # written before the audit entry commits: no entry without a file
            base.write_atomic(out, text, "--out")
    if out is None:
        sys.stdout.write(text)
    else:
        sys.stderr.write(f"{pid}: {count} resources written to {out}\n")


# No command stores a contract record as it is: say what does what with one.
_RECORD_HINT = (
    "; a contract record is assessed by `b12dx assess FILE`, and a person is added for "
    "follow-up by `b12dx patient add`"
)


@patient_app.command("import")
def patient_import(
    file: Annotated[
        str, typer.Argument(help="A FHIR R4 Bundle of one patient (JSON); '-' reads stdin.")
    ],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="When the file's patient is already held here (a b12dx export), replace "
            "that patient's record with the file's.",
        ),
    ] = False,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """A new patient from a FHIR R4 Bundle; prints the new id.

    Reads b12dx's own export exactly, and another system's resources where their codes
    are in b12dx's tables; what was not imported, and why, goes to standard error. A
    patient already held (b12dx's export names its id) is refused unless --replace."""
    from b12dx.cli.io import read_record
    from b12dx.store.bundle_import import AlreadyHeld, import_bundle
    from b12dx.store.bundle_read import CONTRACT_RECORD, IMPORT_ACCEPTS, not_a_bundle

    data = read_record(file)
    source = "standard input" if file == "-" else Path(file).name
    what = not_a_bundle(data)
    if what is not None:  # said before the database is opened (or made)
        named = "standard input" if file == "-" else file
        hint = _RECORD_HINT if what == CONTRACT_RECORD else ""
        raise InputError.single(
            "FILE", f"{named} is {what}, not a FHIR Bundle", IMPORT_ACCEPTS + hint
        )
    with base.work(db, practice) as c:
        try:
            result = import_bundle(c.session, c.kb, c.actor, c.now, data, source, replace=replace)
        except AlreadyHeld as exc:
            raise InputError.single(
                "FILE",
                f"{exc}; importing it again would make a second copy of the person",
                "--replace to replace that patient's record with the file's",
            ) from None
        pid = result.patient.id
    err = sys.stderr
    done = "Replaced the record of" if result.replaced else "Imported"
    err.write(f"{done} {pid}: {len(result.used)} resources used, {len(result.ignored)} not.\n")
    for note in result.ignored:
        err.write(f"  not imported: {note.reference}: {note.note}\n")
    base.out(pid)


# -- across the practice ---------------------------------------------------------------


def due(
    within: Annotated[
        str,
        typer.Option(
            "--within",
            help="How far ahead: days (14), or Nd, Nw, Nm with a month counted as 30 days.",
        ),
    ] = "7d",
    as_of: AsOfOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """What is due across the practice: what is overdue first, then what falls due.

    Overdue maintenance and reviews, then the doses and reviews due within the period
    (default a week), from each patient's assessment as of today (or --as-of)."""
    from b12dx.cli.followup_view import render_due
    from b12dx.store.due import due as due_list

    days = base.parse_within(within)
    with base.work(db, practice) as c, base.options({"within": "--within"}):
        when = base.date_option(as_of, "--as-of") or c.today
        items = due_list(c.session, c.kb, c.actor, when, days)
    if json_out:
        base.out(json.dumps([i.as_dict() for i in items], indent=2))
        return
    render_due(base.console(), items, when, when + dt.timedelta(days=days))


def backup_cmd(
    file: Annotated[Path, typer.Argument(help="The backup file to write (gzipped JSON).")],
    force: ForceOption = False,
    db: DbOption = None,
) -> None:
    """Write a backup of the whole database (every practice) to FILE."""
    from b12dx.cli.io import output_file
    from b12dx.store import backup

    path = output_file(file, "FILE", force)
    with base.database(db) as database:
        try:
            counts = backup.write(database, path)
        except OSError as exc:
            raise InputError.single("FILE", f"cannot write {file}: {exc.strerror}") from None
    base.out(f"Backup written to {file}: " + _counts(counts))


def restore_cmd(
    file: Annotated[Path, typer.Argument(help="A backup written by `b12dx backup`.")],
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Overwrite a database that already holds patients."),
    ] = False,
    max_size_mb: Annotated[
        int,
        typer.Option(
            "--max-size-mb",
            min=1,
            help="The most the backup may hold uncompressed, in MB (a bound against a "
            "file that unpacks to far more than any practice holds).",
        ),
    ] = 2048,
    db: DbOption = None,
) -> None:
    """Restore a backup into the database, in one transaction (all or nothing); every
    patient is checked as `record` would check it."""
    from b12dx.store import backup
    from b12dx.store.audit import Actor

    data = backup.read(file, max_bytes=max_size_mb * 2**20)
    with base.database(db) as database:
        counts = backup.restore(database, data, Actor(base.login()), base.now(), replace=replace)
    base.out(f"Restored {file}: " + _counts(counts))


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {table.replace('_', ' ')}" for table, n in counts.items() if n) or (
        "no rows"
    )


def register(app: typer.Typer) -> None:
    """Add the follow-up commands to ``b12dx``."""
    app.add_typer(patient_app, name="patient")
    app.add_typer(record_app, name="record")
    app.command("due")(due)
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)
