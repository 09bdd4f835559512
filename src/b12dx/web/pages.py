"""HTML pages: the landing page, the patient check, the clinician view and the API docs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from b12dx.cds.state import CdsState
from b12dx.engine.assess import assess
from b12dx.engine.course import route_family
from b12dx.engine.schedule import dose_runs
from b12dx.errors import InputError
from b12dx.knowledge.loader import load_knowledge
from b12dx.knowledge.wording import feature_words, unit_words
from b12dx.models.assessment import Assessment
from b12dx.numbers import format_si
from b12dx.web import forms
from b12dx.web.ics import schedule_calendar
from b12dx.web.settings import assessment_date

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# A lab value in its SI unit, written by the one rounding rule (b12dx.numbers).
templates.env.filters["si"] = format_si


def _feature(feature: str) -> str:
    return feature_words(load_knowledge(), feature)


templates.env.filters["feature"] = _feature


def number_as_written(value: Any) -> str:
    """A result as the person wrote it: 120, not 120.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


templates.env.filters["num"] = number_as_written
templates.env.filters["unit"] = unit_words
# "injection" for the routes of one course of injections (knowledge: courses.yaml)
templates.env.filters["route_family"] = lambda route: route_family(load_knowledge(), route)


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    kb = load_knowledge()
    return templates.TemplateResponse(request, name, {"kb": kb, **context}, status_code=status)


def error_page(request: Request, exc: InputError, status: int) -> HTMLResponse:
    return _render(request, "error.html", status=status, errors=exc.errors)


def missing_page(request: Request, status: int) -> HTMLResponse:
    """A page a browser asked for that is not there (404) or not for that method (405)."""
    heading = "Page not found" if status == 404 else "This page cannot be used that way"
    message = (
        "There is no page at this address."
        if status == 404
        else "The page exists but does not take what was sent."
    )
    return _render(request, "not_found.html", status=status, heading=heading, message=message)


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    return _render(request, "index.html")


# The patient check's answers stay in the form (hidden fields on the "Check your
# answers" page): nothing is stored, so nothing outlives the visit.
@router.get("/check", response_class=HTMLResponse)
def check_form(request: Request) -> HTMLResponse:
    return _check_page(request, {})


def _check_page(
    request: Request,
    form: forms.FormData,
    problems: list[tuple[str, str]] | None = None,
    start_step: int = 0,
    status: int = 200,
    returning: bool = False,
) -> HTMLResponse:
    problems = problems or []
    return _render(
        request,
        "check.html",
        status=status,
        questions=list(load_knowledge().red_flag_questions.values()),
        form=form,
        problems=problems,
        problems_by_field=dict(problems),
        start_step=start_step,
        returning=returning,
    )


def _care(kb: Any, profile: str | None = None) -> Any:
    """Where to go and how, in the profile's country (care_access.yaml)."""
    return kb.care_access[kb.profile(profile).region]


def _emergency(form: forms.FormData, kb: Any) -> Assessment | None:
    """The assessment, when the answers given so far already make an emergency (the
    engine's red-flag rules decide). Age may not be asked yet: an adult's is assumed for
    this question only, as no emergency rule depends on age; results are left out."""
    partial = {k: v for k, v in form.items() if not k.startswith("lab_")}
    if not partial.get("age_years", "").strip() or not any(
        c.isdigit() for c in partial.get("age_years", "")
    ):
        partial["age_years"] = "40"
    try:
        a = assess(forms.patient_check_record(partial, kb), as_of=dt.date.today())
    except InputError:
        return None
    return a if a.urgency == "emergency" else None


def _asked_groups(kb: Any) -> list[str]:
    """The symptom groups the patient check can ask about (a person reports them)."""
    return [
        gid for gid, g in kb.symptom_groups.items() if gid != "red_flag" and g.found_by == "person"
    ]


def _check_steps(kb: Any) -> list[str]:
    """The check's steps in order (check.html holds them in the same order). A group asked
    of everyone is on the step it is asked with ("about", or "onset" for the course)."""
    groups = [f"group:{g}" for g in _asked_groups(kb) if kb.symptom_groups[g].asked == "by_area"]
    return ["rf", "about", "areas", *groups, "onset", "medicines", "conditions", "labs"]


def _group_step(gid: str, kb: Any) -> str:
    """The step a symptom group's questions are on."""
    asked = kb.symptom_groups[gid].asked
    return f"group:{gid}" if asked == "by_area" else {"about": "about", "course": "onset"}[asked]


def _step_of(field: str, kb: Any) -> int:
    """The step of the check that holds an answer (to show it again with its error)."""
    order = _check_steps(kb)
    if field.startswith("rf_"):
        return 0
    if field.startswith(("duration", "onset", "progressing")):
        return order.index("onset")
    if field.startswith("lab_"):
        return order.index("labs")
    if field.startswith("sym_") and field[4:] in kb.symptoms:
        step = _group_step(kb.symptoms[field[4:]].group, kb)
        return order.index(step) if step in order else 0
    if field.startswith("med_"):
        return order.index("medicines")
    if field.startswith(("cond_", "exp_")):
        return order.index("conditions")
    return order.index("about")


def _check_words(error: Any, kb: Any) -> str:
    """An error the engine found in the check's answers, in words for the person."""
    if "outside what is possible" in error.message:
        value = error.message.split(" is outside")[0]
        test = kb.labs.get(error.message.rsplit(" ", 1)[-1])
        name = test.name if test else "this result"
        return (
            f"{value} is not a result a laboratory reports for {name[:1].lower() + name[1:]}: "
            "check the number and the unit on your report. If they are right, show the "
            "report to a doctor"
        )
    return f"Check this answer: {error.message}"


def _answer_of(path: str, form: forms.FormData, kb: Any) -> str:
    """The form field an engine error's path is about (labs[0].value -> the value box of
    that test), so its link goes to an answer that is on the page."""
    head, _, rest = path.partition(".")
    name, _, index = head.partition("[")
    if name == "labs" and index:
        entered = [t for t in forms.LAB_TESTS if form.get(f"lab_{t}_value", "").strip()]
        i = int(index.rstrip("]"))
        if i < len(entered):
            return f"lab_{entered[i]}_{'unit' if rest == 'unit' else 'value'}"
        return "has_results_yes"
    prefix = {"symptoms": "sym_", "medications": "med_", "conditions": "cond_"}.get(name)
    if prefix and index:
        ticked = [k for k in form if k.startswith(prefix) and not k.endswith("_long")]
        i = int(index.rstrip("]"))
        return ticked[i] if i < len(ticked) else "age_years"
    return "age_years" if name in ("age_years", "") else name


@router.post("/check/triage")
async def check_triage(request: Request) -> JSONResponse:
    """Between steps (with JavaScript): do the answers so far already make an emergency?
    Then the check stops there, whatever step it is on."""
    form = await _form(request)
    return JSONResponse({"emergency": _emergency(form, load_knowledge()) is not None})


@router.post("/check", response_class=HTMLResponse)
async def check_result(request: Request) -> HTMLResponse:
    form = await _form(request)
    kb = load_knowledge()
    care = _care(kb)
    action = form.get("action", "")
    if action.startswith("change:"):
        # Back to the step, with a way straight back to "Check your answers".
        step = action.removeprefix("change:")
        start = int(step) if step.isdigit() else 0
        return _check_page(request, form, start_step=start, returning=True)
    emergency = _emergency(form, kb)
    if emergency is not None:
        # A red flag ends the check at whatever step it was answered: only the action.
        return _render(
            request, "check_emergency.html", a=emergency, care=care, names=_flag_names(form)
        )
    problems = forms.check_problems(form, kb)
    if problems:
        return _check_page(
            request, form, problems, start_step=_step_of(problems[0][0], kb), status=422
        )
    try:
        record = forms.patient_check_record(form, kb)
        a = assess(record, as_of=dt.date.today())
    except InputError as exc:
        plain = [(_answer_of(e.path, form, kb), _check_words(e, kb)) for e in exc.errors]
        return _check_page(request, form, plain, start_step=_step_of(plain[0][0], kb), status=422)
    if form.get("confirmed") != "yes":
        return _render(
            request, "check_answers.html", form=form, record=record, steps=_answer_rows(form, kb)
        )
    tests = [s for s in a.next_steps if s.id.startswith("order_")]
    return _render(request, "check_result.html", a=a, record=record, tests=tests, care=care)


def _flag_names(form: forms.FormData) -> list[str]:
    return [q.text for q in load_knowledge().red_flag_questions.values() if form.get(q.id)]


def _answer_rows(form: forms.FormData, kb: Any) -> list[tuple[int, str, list[str]]]:
    """(step, question, answers in words) for the "Check your answers" page: the steps
    that were asked (the areas chosen, or all of them when none was)."""
    order = _check_steps(kb)
    rows: list[tuple[int, str, list[str]]] = []
    rows.append((0, "Emergency signs", _flag_names(form) or ["None of these"]))
    about = [f"{form.get('age_years', '').strip()} years old"]
    sex = {"female": "Female", "male": "Male", "other": "Other"}.get(form.get("sex", ""))
    about += [sex] if sex else []
    about += ["Pregnant"] if form.get("pregnant") else []
    about += ["Breastfeeding"] if form.get("breastfeeding") else []
    rows.append((order.index("about"), "About you", about))
    groups = _asked_groups(kb)
    chosen = [
        g for g in groups if form.get(f"area_{g}") and kb.symptom_groups[g].asked == "by_area"
    ]
    every = form.get("area_all") or not chosen
    rows.append(
        (
            order.index("areas"),
            "What your symptoms are about",
            ["Not sure: asked about all"]
            if form.get("area_all")
            else [kb.symptom_groups[g].name for g in chosen] or ["Not answered"],
        )
    )
    for gid in groups:
        group = kb.symptom_groups[gid]
        ticked = [
            s.name for s in kb.symptoms.values() if s.group == gid and form.get(f"sym_{s.id}")
        ]
        by_area = group.asked == "by_area"
        if by_area and not (every or gid in chosen or ticked):
            continue
        if not by_area and not ticked:
            continue  # asked of everyone beside another step: shown when answered
        none = ["None of these"] if form.get(f"none_{gid}") else ["Nothing ticked"]
        step = order.index(_group_step(gid, kb))
        rows.append((step, group.plain_name or group.name, ticked or none))
    onset = {"gradual": "Slowly, over weeks or months", "sudden": "Suddenly, over hours or days"}
    when = [onset[form["onset"]]] if form.get("onset") in onset else []
    if form.get("duration_value", "").strip():
        when.append(f"For {form['duration_value'].strip()} {form.get('duration_unit', 'weeks')}")
    if form.get("progressing") in ("yes", "no"):
        when.append("Getting worse" if form["progressing"] == "yes" else "Not getting worse")
    rows.append((order.index("onset"), "When it started", when or ["Not answered"]))
    meds = [
        m.name + (" (for 2 years or more)" if form.get(f"med_{m.id}_long") else "")
        for m in kb.medications.values()
        if form.get(f"med_{m.id}")
    ]
    rows.append((order.index("medicines"), "Medicines", meds or ["None"]))
    conds = [c.plain_name or c.name for c in kb.conditions.values() if form.get(f"cond_{c.id}")]
    conds += [e.plain_name or e.name for e in kb.exposures.values() if form.get(f"exp_{e.id}")]
    rows.append(
        (order.index("conditions"), "Conditions, nitrous oxide and alcohol", conds or ["None"])
    )
    labs = [
        f"{kb.labs[t].name}: {form[f'lab_{t}_value'].strip()} {form.get(f'lab_{t}_unit', '')}"
        for t in forms.LAB_TESTS
        if form.get(f"lab_{t}_value", "").strip()
    ]
    rows.append((order.index("labs"), "Blood test results", labs or ["None"]))
    return sorted(rows, key=lambda row: row[0])  # in the order the steps were asked


def _clinician_context(a: Assessment) -> dict[str, Any]:
    runs = dose_runs(a.treatment.schedule) if a.treatment else []
    span = 15 * 30  # the recovery chart covers 15 months from the first dose
    chart = []
    if a.treatment and a.recovery_milestones:
        for i, m in enumerate(a.recovery_milestones):
            days = (m.expected_by - a.treatment.start).days
            chart.append({"m": m, "x": 60 + 520 * min(days, span) / span, "y": 30 + 24 * i})
    return {"runs": runs, "chart": chart, "notes": notes_text(a, runs)}


def _day(day: dt.date) -> str:
    return day.strftime("%d %b %Y")


def notes_text(a: Assessment, runs: list[Any]) -> str:
    """A few lines for the patient's notes, every word the assessment's own: status and
    urgency, the results with their units, the plan with its first dose, the review."""
    kb = load_knowledge()
    lines = [
        f"B12 assessment {_day(a.as_of)} (b12dx {a.engine_version}, profile {a.profile})",
        f"Status: {a.deficiency_status.replace('_', ' ')}. "
        f"Urgency: {a.urgency.replace('_', ' ')} "
        f"({kb.urgency[a.urgency].text.rstrip('.').lower()}).",
    ]
    if a.triage and a.triage.tempo:
        # What the plan rests on: the symptoms (with their tempo) and nerve involvement.
        said = [
            kb.symptoms[sid].clinical_name.lower() + (f" ({tempo})" if tempo else "")
            for sid, tempo in a.triage.tempo.items()
            if sid in kb.symptoms
        ]
        nerves = "; nerve involvement" if a.neurological_involvement else ""
        lines.append(f"Symptoms: {', '.join(said)}{nerves}.")
    if a.red_flags:
        names = ", ".join(r.name for r in a.red_flags)
        lines.append(f"Red flags: {names}.")
    if a.labs:
        results = []
        for lab in a.labs:
            unit = f" {unit_words(lab.unit)}" if lab.unit else ""
            date = f", {_day(lab.date)}" if lab.date else ""
            name = kb.labs[lab.test].name
            results.append(f"{name} {number_as_written(lab.value)}{unit} ({lab.band}{date})")
        lines.append("Results: " + "; ".join(results) + ".")
    t = a.treatment
    if t is not None:
        plan = f"Plan: {t.drug} {t.dose} {t.route.upper()}, "
        plan += f"{'started' if t.under_way else 'first dose'} {_day(t.start)}"
        plan += "".join(
            f"; {phase} {interval} from {_day(start)}" for phase, start, _, interval, *_ in runs
        )
        lines.append(plan + ".")
    steps = [s.text + (f" (by {_day(s.due)})" if s.due else "") for s in a.next_steps[:3]]
    if steps:
        lines.append("Next: " + " ".join(steps))
    reviews = (
        t.review_dates
        if t
        else [s.due for s in a.next_steps if s.id == "schedule_review" and s.due]
    )
    if reviews:
        lines.append("Review: " + ", ".join(_day(d) for d in reviews) + ".")
    return "\n".join(lines)


async def _clinician_access(request: Request, form: Mapping[str, str] | None = None) -> str:
    """On a server that requires sign-in the clinician's pages are a clinician's: a
    signed-in visitor (NotSignedIn sends a browser to sign in and back), and a form
    posted with the session's CSRF token. Returns that token ("" when sign-in is off:
    the pages then answer this machine only, through the loopback guard of the API)."""
    fu = getattr(request.app.state, "followup", None)
    if fu is None or not fu.settings.require_login:
        return ""
    visitor = await fu.run(request, lambda s: fu.visitor(s, request))
    if form is not None:
        fu.check_form(visitor, form)
    token: str = visitor.csrf_token
    return token


@router.get("/clinician", response_class=HTMLResponse)
async def clinician_form(request: Request, ref: str | None = None) -> HTMLResponse:
    csrf = await _clinician_access(request)
    if ref is None:
        return _render(request, "clinician.html", form={}, today=dt.date.today(), csrf=csrf)
    # A CDS card's link: the record it refers to, kept for a clinic day (cds/state.py).
    state: CdsState = request.app.state.cds_state
    record = state.handed_over(ref)
    if record is None:
        return _render(
            request,
            "clinician.html",
            status=404,
            form={},
            today=dt.date.today(),
            expired_link=True,
            csrf=csrf,
        )
    a = assess(record, as_of=assessment_date(record, dt.date.today()))
    return _clinician_result(request, a, record, csrf)


def _clinician_result(
    request: Request, a: Assessment, record: dict[str, Any], csrf: str
) -> HTMLResponse:
    """The clinician's result page, with the record it was made from (to print or save)."""
    return _render(
        request,
        "clinician_result.html",
        a=a,
        record_json=json.dumps(record),
        profile=a.profile,
        csrf=csrf,
        **_clinician_context(a),
    )


@router.post("/clinician", response_class=HTMLResponse)
async def clinician_result(request: Request) -> HTMLResponse:
    form = await _form(request)
    csrf = await _clinician_access(request, form)
    kb = load_knowledge()
    # Every problem at once: the form's own (unanswered red flags, unreadable numbers),
    # then the engine's about the rest of the record, each in words and linked to its box.
    record, found = forms.clinician_answers(form, kb)
    problems = [(e.path, e.message) for e in found]
    try:
        as_of = assessment_date(record, dt.date.today())
        a = assess(record, profile=form.get("profile") or None, as_of=as_of)
    except InputError as exc:
        problems += forms.clinician_problems(exc.errors, record, form, kb)
        problems += _more_problems(forms.without_problems(record, exc.errors), form, kb)
    if problems:
        first: dict[str, str] = {}
        for box, message in problems:
            first.setdefault(box, message)  # one message a box: the first found
        return _render(
            request,
            "clinician.html",
            status=422,
            form=form,
            problems=list(first.items()),
            problems_by_field=first,
            today=dt.date.today(),
            csrf=csrf,
        )
    return _clinician_result(request, a, record, csrf)


def _more_problems(record: dict[str, Any], form: forms.FormData, kb: Any) -> list[tuple[str, str]]:
    """What the engine finds in the rest of the record, once what it refused first is
    left out (its shape is checked before its ids, units and dates)."""
    if form.get("record_json", "").strip():
        return []  # a pasted record is the sender's to fix, path by path
    try:
        assess(record, profile=form.get("profile") or None, as_of=dt.date.today())
    except InputError as exc:
        return forms.clinician_problems(exc.errors, record, form, kb)
    return []


@router.post("/clinician/schedule.ics")
async def clinician_calendar(request: Request) -> Response:
    form = await _form(request)
    await _clinician_access(request, form)
    kb = load_knowledge()
    record = forms.clinician_record({"record_json": form.get("record_json", "")}, kb)
    as_of = assessment_date(record, dt.date.today())
    a = assess(record, profile=form.get("profile") or None, as_of=as_of)
    if a.treatment is None:
        raise InputError.single("", "no treatment is indicated, so there is no schedule")
    return Response(
        schedule_calendar(
            a.treatment,
            a.as_of,
            kb.regimens.get(a.treatment.regimen),
            form.get("reference") or None,
        ),
        media_type="text/calendar",
        headers={"content-disposition": 'attachment; filename="b12-schedule.ics"'},
    )


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    spec = request.app.openapi()
    return _render(request, "docs.html", spec=spec)
