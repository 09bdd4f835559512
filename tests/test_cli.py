"""The command line: its JSON is exactly the engine's assessment, bad input exits 2 with
one clear message naming the field, and the other commands print what they promise."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from b12dx import InputError, assess, examples, input_schema, output_schema
from b12dx.knowledge.loader import load_knowledge
from cli_calls import call

EXAMPLES = Path(examples.__file__).parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return call(capsys, argv)


def write(tmp_path: Path, data: Any, name: str = "patient.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize("name", list(examples.catalogue()))
def test_assess_json_is_exactly_the_engines_assessment(capsys, name: str) -> None:
    code, out, err = run(
        capsys, "assess", str(EXAMPLES / f"{name}.json"), "--json", "--as-of", "2026-11-21"
    )
    assert code == 0, err
    expected = assess(examples.load(name), as_of=dt.date(2026, 11, 21))
    assert json.loads(out) == expected.model_dump(mode="json")
    assert err == ""


def test_profile_option_reaches_the_engine(capsys, tmp_path: Path) -> None:
    patient = {
        "age_years": 40,
        "as_of": "2026-11-21",
        "labs": [{"test": "total_b12", "value": 190, "unit": "ng/L", "date": "2026-11-01"}],
    }
    path = write(tmp_path, patient)
    _, nice, _ = run(capsys, "assess", path, "--json")
    _, bsh, _ = run(capsys, "assess", path, "--json", "--profile", "bsh-2014")
    assert json.loads(nice)["labs"][0]["band"] == "indeterminate"
    assert json.loads(bsh)["labs"][0]["band"] == "deficient"
    assert json.loads(bsh)["profile"] == "bsh-2014"


def test_as_of_defaults_to_the_records_date_then_today(capsys, tmp_path: Path) -> None:
    _, out, _ = run(
        capsys, "assess", write(tmp_path, {"age_years": 50, "as_of": "2025-01-02"}), "--json"
    )
    assert json.loads(out)["as_of"] == "2025-01-02"
    _, out, _ = run(capsys, "assess", write(tmp_path, {"age_years": 50}), "--json")
    assert json.loads(out)["as_of"] == dt.date.today().isoformat()


def test_report_shows_urgency_schedule_and_sources(capsys) -> None:
    code, out, _ = run(
        capsys, "assess", str(EXAMPLES / "metformin_neuropathy.json"), "--as-of", "2026-11-21"
    )
    assert code == 0
    for expected in (
        "URGENT",
        "Next steps",
        "Dose schedule",
        "every 2 days",
        "every 2 months",
        "Expected recovery",
        "Sources",
        "Vitamin B12 deficiency in over 16s",
        "does not replace",
        "from 2028-01",  # sensory conduction may take 14 months or more: not "by"
    ):
        assert expected in out
    # The urgency line cites its rule and sources like every other line.
    head = out[: out.index("Summary")]
    assert "(rule urgency." in head and "sources [" in head


def test_report_of_a_red_flag_leads_with_emergency(capsys) -> None:
    code, out, _ = run(capsys, "assess", str(EXAMPLES / "red_flag_ascending.json"))
    assert code == 0
    assert "EMERGENCY" in out.split("\n", 3)[1]
    assert "Red flags" in out


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON (line 1"),
        ("[1, 2]", "must be a JSON object"),
        ('{"age_years": 200}', "age_years"),
        (
            '{"age_years": 40, "symptoms": [{"id": "headache"}, {"id": "wobbly"}]}',
            "symptoms[1].id: unknown id 'wobbly' (accepted: muscle_weakness",
        ),
        (
            '{"age_years": 40, "labs": [{"test": "total_b12", "value": 150, "unit": "g/dL"}]}',
            "labs[0].unit: 'g/dL' is not a unit of total_b12 (accepted: ng/L, pg/mL, pmol/L)",
        ),
        (
            '{"age_years": 40, "labs": [{"test": "total_b12", "value": 150}]}',
            "labs[0].unit: is required",
        ),
        (
            '{"age_years": 40, "labs": [{"test": "hemoglobin", "value": -3, "unit": "g/L"}]}',
            "labs[0].value",
        ),
        (
            '{"age_years": 40, "labs": [{"test": "mcv", "value": 90, "unit": "fL", '
            '"date": "2027-02-01"}]}',
            "labs[0].date: 2027-02-01 is after as_of 2026-11-21",
        ),
        ('{"age_years": 40, "colour": "blue"}', "colour: unknown field"),
        ('{"age_years": NaN}', "NaN"),
    ],
)
def test_bad_input_exits_2_with_one_message_naming_the_field(
    capsys, tmp_path: Path, content: str, fragment: str
) -> None:
    code, out, err = run(
        capsys, "assess", write(tmp_path, content), "--json", "--as-of", "2026-11-21"
    )
    assert code == 2
    assert out == ""
    assert err.startswith("b12dx: error: ")
    assert fragment in err
    assert "Traceback" not in err


BAD_DATES = [
    ("labs", {"test": "total_b12", "value": 150, "unit": "pg/mL", "date": "12/01/2026"}),
    ("b12_treatment", {"date": "2026-02-30", "drug": "hydroxocobalamin", "route": "im"}),
    ("symptom_ratings", {"id": "numbness", "date": 20260101, "rating": "mild"}),
]


@pytest.mark.parametrize(("field", "entry"), BAD_DATES, ids=[f for f, _ in BAD_DATES])
def test_a_bad_date_in_a_record_names_its_field_and_the_form_accepted(
    capsys, tmp_path: Path, field: str, entry: dict[str, Any]
) -> None:
    """As the --as-of option does: the field (a field called date was once dropped from
    the path, leaving labs[0]) and YYYY-MM-DD, through the command line and the library."""
    bad = entry["date"]
    expected = f"{field}[0].date: {bad!r} is not a date (expected a date as YYYY-MM-DD)"
    record = {"age_years": 40, field: [entry]}
    code, out, err = run(capsys, "assess", write(tmp_path, record), "--as-of", "2026-11-21")
    assert code == 2 and out == ""
    assert err == f"b12dx: error: invalid input: {expected}\n"
    with pytest.raises(InputError) as caught:
        assess(record | {"as_of": "1.1.2026"})
    assert [str(e) for e in caught.value.errors] == [
        "as_of: '1.1.2026' is not a date (expected a date as YYYY-MM-DD)",
        expected,
    ]


def test_unknown_profile_bad_date_and_missing_file_exit_2(capsys, tmp_path: Path) -> None:
    path = write(tmp_path, {"age_years": 40})
    code, _, err = run(capsys, "assess", path, "--profile", "who-2099")
    assert code == 2 and "unknown profile 'who-2099'" in err and "nice-ng239" in err
    code, _, err = run(capsys, "assess", path, "--as-of", "21/11/2026")
    assert code == 2 and "--as-of" in err and "YYYY-MM-DD" in err
    code, _, err = run(capsys, "assess", str(tmp_path / "missing.json"))
    assert code == 2 and "file not found" in err


def test_json_and_fhir_together_are_refused(capsys, tmp_path: Path) -> None:
    """Each prints one document; given both, FHIR used to win without a word."""
    path = write(tmp_path, {"age_years": 40})
    code, out, err = run(capsys, "assess", path, "--json", "--fhir")
    assert code == 2 and out == ""
    assert err == "b12dx: error: invalid input: --json and --fhir cannot be used together\n"


def test_schema_prints_the_contract_schemas(capsys) -> None:
    code, out, _ = run(capsys, "schema", "input")
    assert code == 0 and json.loads(out) == input_schema()
    code, out, _ = run(capsys, "schema", "output")
    assert code == 0 and json.loads(out) == output_schema()
    code, _, err = run(capsys, "schema", "middle")
    assert code == 2 and "input, output" in err


def test_explain_shows_an_entry_with_its_sources(capsys) -> None:
    code, out, _ = run(capsys, "explain", "im_neurological")
    assert code == 0
    assert "alternate days" in out and "bnf-hydroxocobalamin" in out
    code, out, _ = run(capsys, "explain", "status.b12_deficient")
    assert code == 0 and "deficient band" in out and "seed-leg-weakness" in out
    code, _, err = run(capsys, "explain", "unicorn")
    assert code == 2 and "unicorn" in err


def test_knowledge_lists_topics_and_entries(capsys) -> None:
    code, out, _ = run(capsys, "knowledge")
    assert code == 0 and "symptoms" in out and "regimens" in out
    code, out, _ = run(capsys, "knowledge", "red_flags")
    assert code == 0 and "ascending_weakness" in out
    code, _, err = run(capsys, "knowledge", "astrology")
    assert code == 2 and "symptoms" in err and "codes" in err


def test_knowledge_codes_lists_every_code_table_with_its_verified_mark(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one row a line
    code, out, _ = run(capsys, "knowledge", "codes")
    assert code == 0
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines()]
    rows = [r for r in rows if len(r) == 6]
    kb = load_knowledge()
    expected = {
        (topic, key, c.system, c.code, "yes" if c.verified else "no")
        for topic, entries in kb.topics().items()
        for key, entry in entries.items()
        for c in getattr(entry, "codes", None) or []
    }
    assert {(t, k, s, c, v) for t, k, s, c, _, v in rows} == expected
    systems = {r[2] for r in rows}
    assert {"LOINC", "SNOMED CT", "RxNorm", "ATC"} <= systems
    assert ["labs", "total_b12", "LOINC", "2132-9"] in [r[:4] for r in rows]


def test_example_lists_and_prints_examples(capsys) -> None:
    code, out, _ = run(capsys, "example")
    assert code == 0 and "metformin_neuropathy" in out
    code, out, _ = run(capsys, "example", "gym_strain")
    assert code == 0 and json.loads(out) == examples.load("gym_strain")
    code, _, err = run(capsys, "example", "dragon")
    assert code == 2 and "unknown example 'dragon'" in err


def test_installed_command_reads_stdin_in_a_real_process() -> None:
    exe = shutil.which("b12dx", path=str(Path(sys.executable).parent))
    assert exe is not None
    stdin = (EXAMPLES / "nitrous_oxide.json").read_text()
    done = subprocess.run(
        [exe, "assess", "-", "--json", "--as-of", "2026-11-21"],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["urgency"] == "urgent"
    bad = subprocess.run(
        [exe, "assess", "-"], input="{", capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_serve_refuses_unauthenticated_cds_beyond_loopback(capsys, monkeypatch) -> None:
    """Every CDS call should carry a JWT: beyond loopback, no issuers means refusing to
    start (exit 2, naming --cds-issuers and --cds-open), before anything is opened."""
    monkeypatch.delenv("B12DX_CDS_ISSUERS", raising=False)
    monkeypatch.setenv("B12DX_PUBLIC_URL", "https://b.example")  # restored after the test
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", "--port", "1")
    assert code == 2
    assert "--cds-issuers" in err and "--cds-open" in err


def test_serve_behind_a_proxy_on_loopback_is_served_as_beyond_it(capsys, monkeypatch) -> None:
    """A proxy on this machine forwards every request from 127.0.0.1, often with a local
    Host: with --public-url or --trusted-proxies, CDS Hooks without issuers is refused as
    beyond loopback (and sign-in is required: tests/test_followup_web.py)."""
    monkeypatch.delenv("B12DX_CDS_ISSUERS", raising=False)
    monkeypatch.setenv("B12DX_PUBLIC_URL", "https://b.example")
    code, _, err = run(capsys, "serve", "--port", "1")
    assert code == 2 and "--cds-issuers" in err


def test_serve_beyond_loopback_needs_the_public_url(capsys, monkeypatch) -> None:
    """Without it the CDS tokens' audience and the card links came from the request's Host
    header: a token minted for another service on the same path was accepted. Refused
    before anything is opened (exit 2, naming --public-url)."""
    monkeypatch.delenv("B12DX_PUBLIC_URL", raising=False)
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", "--port", "1", "--cds-open")
    assert code == 2 and "--public-url" in err


# -- the terminal report at 80 columns ------------------------------------------------------


def _example(capsys: pytest.CaptureFixture[str], name: str) -> str:
    code, out, _ = run(capsys, "example", name)
    assert code == 0
    return out


def _assess_80(capsys, monkeypatch, tmp_path, *extra: str) -> str:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "80")
    record = tmp_path / "record.json"
    record.write_text(_example(capsys, "nitrous_oxide"))
    code, out, err = run(capsys, "assess", str(record), "--as-of", "2026-11-21", *extra)
    assert code == 0, err
    return out


def test_the_report_fits_80_columns_with_hanging_indents_and_no_cut_text(
    capsys, monkeypatch, tmp_path
) -> None:
    out = _assess_80(capsys, monkeypatch, tmp_path)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "..." not in out and "…" not in out, "nothing cut short (addresses wrap)"
    # A wrapped bullet's next line starts under its text, not under the bullet.
    for i, line in enumerate(lines[:-1]):
        if line.startswith("  • ") and len(line.rstrip()) > 70:
            assert lines[i + 1].startswith("    "), (line, lines[i + 1])
    assert "https://bnf.nice.org.uk/drugs/hydroxocobalamin/" in out.replace("\n", "").replace(
        " ", ""
    )


def test_brief_gives_the_urgency_what_to_do_now_the_results_and_the_schedule(
    capsys, monkeypatch, tmp_path
) -> None:
    out = _assess_80(capsys, monkeypatch, tmp_path, "--brief")
    assert out.startswith(" URGENT ")
    assert "Do now" in out and "Hydroxocobalamin 1 mg IM, first dose 2026-11-21" in out
    assert "Total serum vitamin B12 410 pmol/L: normal" in out
    assert "loading: 2026-11-21" in out
    for absent in ("Sources", "Differential", "B12 in food"):
        assert absent not in out
    assert len(out.splitlines()) < 20
    code, _, err = run(capsys, "assess", str(tmp_path / "record.json"), "--brief", "--json")
    assert code == 2 and "--brief" in err


def test_explain_prints_readable_text_not_python(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "explain", "im_neurological")
    assert code == 0
    assert "{'" not in out and "[{" not in out and "': " not in out
    assert "phase: maintenance; every months: 2" in out


def test_units_print_as_written_and_si_only_when_it_differs(capsys, monkeypatch, tmp_path) -> None:
    """MMA in µmol/L (the contract spells it umol/L) is shown with the micro sign and no SI
    column repeating it; a homocysteine in mg/L gets its SI value in µmol/L beside it."""
    monkeypatch.setenv("COLUMNS", "120")
    record = {
        "age_years": 60,
        "labs": [
            {"test": "mma", "value": 0.52, "unit": "umol/L", "date": "2026-11-18"},
            {"test": "homocysteine", "value": 2.7, "unit": "mg/L", "date": "2026-11-18"},
        ],
    }
    code, out, err = run(capsys, "assess", write(tmp_path, record), "--as-of", "2026-11-21")
    assert code == 0, err
    assert "umol" not in out
    mma = next(line for line in out.splitlines() if line.startswith("│ Methylmalonic"))
    assert mma.count("µmol/L") == 1, mma
    hcy = next(line for line in out.splitlines() if line.startswith("│ Total homocysteine"))
    assert "2.7 mg/L" in hcy and "µmol/L" in hcy, hcy


def test_assess_at_a_terminal_pages_through_less_with_its_colours(tmp_path: Path) -> None:
    """At a real terminal the report goes through the pager; less shows its colours only
    with -R, so LESS must hold R (set as git sets it when the reader has not)."""
    import os
    import pty

    from processes import b12dx_command

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    less = bin_dir / "less"
    # A stand-in for less: asked whether it exists (at the terminal) it says yes; given
    # the report on a pipe, it keeps what it got and the LESS it was run with.
    less.write_text(
        "#!/bin/sh\n[ -t 0 ] && exit 0\n"
        f'printf "%s" "$LESS" > {tmp_path}/less-env\ncat > {tmp_path}/less-input\n'
    )
    less.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PAGER", "MANPAGER", "LESS")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    main, child = pty.openpty()
    argv = [
        *b12dx_command(),
        "assess",
        str(EXAMPLES / "nitrous_oxide.json"),
        "--as-of",
        "2026-11-21",
    ]
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    while True:  # drain the terminal until the command is done
        try:
            if not os.read(main, 4096):
                break
        except OSError:
            break
    assert proc.wait(timeout=60) == 0
    os.close(main)
    paged = (tmp_path / "less-input").read_text()
    assert "\x1b[" in paged and "urgent" in paged.lower(), "the report, in colour"
    assert "R" in (tmp_path / "less-env").read_text(), "less is told to show the colours"


def test_every_list_command_offers_json(capsys) -> None:
    kb = load_knowledge()
    code, out, _ = run(capsys, "knowledge", "--json")
    assert code == 0 and {r["topic"]: r["entries"] for r in json.loads(out)} == {
        t: len(e) for t, e in kb.topics().items()
    }
    code, out, _ = run(capsys, "knowledge", "red_flags", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == list(kb.topics()["red_flags"])
    code, out, _ = run(capsys, "knowledge", "codes", "--json")
    codes = json.loads(out)
    assert code == 0 and {"topic": "labs", "entry": "total_b12", "system": "LOINC",
                          "code": "2132-9"}.items() <= next(
        c for c in codes if c["entry"] == "total_b12" and c["code"] == "2132-9"
    ).items()  # fmt: skip
    code, out, _ = run(capsys, "example", "--json")
    assert code == 0 and {r["name"]: r["description"] for r in json.loads(out)} == (
        examples.catalogue()
    )


def test_piped_knowledge_lists_never_cut_an_id(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped (not a terminal), where Rich lays tables out in 80 columns, every id and
    code is still whole on one line, never cut with an ellipsis."""
    monkeypatch.delenv("COLUMNS", raising=False)
    kb = load_knowledge()
    code, out, _ = run(capsys, "knowledge", "codes")
    assert code == 0 and "…" not in out
    cells = {c.strip() for line in out.splitlines() for c in line.split("│")}
    for topic, entries in kb.topics().items():
        for key, entry in entries.items():
            for c in getattr(entry, "codes", None) or []:
                assert {key, c.code} <= cells, (topic, key, c.code)
    for topic in ("rules", "symptoms"):
        code, out, _ = run(capsys, "knowledge", topic)
        cells = {c.strip() for line in out.splitlines() for c in line.split("│")}
        assert code == 0 and "…" not in out and set(kb.topics()[topic]) <= cells


def test_version_names_the_package_engine_knowledge_and_contract(capsys) -> None:
    """What an installation runs, for a hospital's audit: the same figures every
    assessment carries, and the package as installed."""
    from importlib.metadata import version

    from b12dx.knowledge import load_knowledge
    from b12dx.version import ENGINE_VERSION, SCHEMA_VERSION
    from cli_calls import call

    code, out, _ = call(capsys, ["--version"])
    assert code == 0
    assert out.split() == [
        "b12dx", version("b12dx"), "engine", ENGINE_VERSION,
        "knowledge", load_knowledge().version, "contract", SCHEMA_VERSION,
    ]  # fmt: skip


@pytest.mark.parametrize("name", list(examples.catalogue()))
def test_an_example_says_the_same_whatever_the_day(capsys, name: str) -> None:
    """Each example carries its as_of, so what it shows does not drift with the calendar
    (an "indeterminate" example once became "not assessed" a year after it was written)."""
    record = examples.load(name)
    assert record.get("as_of"), f"{name} has no as_of"
    code, out, _ = run(capsys, "assess", str(EXAMPLES / f"{name}.json"), "--json")
    assert code == 0 and json.loads(out)["as_of"] == record["as_of"]


def test_british_spellings_and_an_upper_case_route_read_as_the_contract_ids(capsys) -> None:
    """Every text b12dx writes is British and prints routes as "IM": a clinician who
    types them so is read, as the same ids, never refused."""
    from b12dx.engine.assess import assess as engine

    british = {
        "as_of": "2026-12-01", "age_years": 60,
        "conditions": [{"id": "pernicious_anaemia"}],
        "labs": [{"test": "haemoglobin", "value": 95, "unit": "g/L"}],
        "b12_treatment": [{"date": "2026-11-30", "drug": "hydroxocobalamin", "route": "IM"}],
    }  # fmt: skip
    american = json.loads(json.dumps(british).replace("anaemia", "anemia").replace("haemo", "hemo"))
    american["b12_treatment"][0]["route"] = "im"
    assert engine(british).model_dump() == engine(american).model_dump()


def test_no_flag_shows_a_type_in_any_help(capsys) -> None:
    """A flag takes no value: its help shows none ("--json <bool>" read as if it took
    one). Every command and subcommand, walked from the app itself, asked for --help as
    a user does."""
    import typer

    from b12dx.cli.app import app
    from cli_calls import call

    def paths(command: Any, path: list[str]) -> list[list[str]]:
        # typer builds the commands on click (its own copy in newer releases): walked by
        # what they have, not by class.
        out = [path]
        for name, sub in getattr(command, "commands", {}).items():
            out += paths(sub, [*path, name])
        return out

    shown = []
    every = paths(typer.main.get_command(app), [])
    assert len(every) > 20, "not every command was walked"
    for path in every:
        code, out, err = call(capsys, [*path, "--help"])
        assert code == 0 and "Usage:" in out, (path, err)
        if "<bool>" in out:
            shown.append(" ".join(path) or "b12dx")
    assert not shown, shown


@pytest.mark.parametrize("entry", ["seed-weakness", "im_neurological", "paresthesia"])
def test_explain_credits_a_seed_by_its_title_never_its_file(capsys, entry: str) -> None:
    """No user has the project's copies of the seed articles: a path to them is noise."""
    from cli_calls import call

    code, out, _ = call(capsys, ["explain", entry])
    assert code == 0 and "seeds/" not in out and ".txt" not in out


@pytest.mark.parametrize(
    ("extra", "believed"),
    [([], None), (["--trusted-proxies", "127.0.0.1, 10.0.0.5"], ["127.0.0.1", "10.0.0.5"])],
)
def test_serve_believes_forwarded_headers_only_from_the_proxies_named(
    capsys, monkeypatch, tmp_path, extra, believed
) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 unless told, so any local client
    could choose the address its sign-in attempts were counted against."""
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    from b12dx.web.server import ENV_NAMES

    # serve puts its settings in the environment for its workers: each is put back as it
    # was after the test (set, then removed, so that monkeypatch records its old state).
    written = ("B12DX_DATABASE_URL", "B12DX_REQUIRE_LOGIN", "B12DX_CSRF_SECRET",
               "B12DX_CDS_OPEN", "B12DX_CDS_OPEN_WARNED", "B12DX_PUBLIC_URL",
               *ENV_NAMES.values())  # fmt: skip
    for name in written:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("B12DX_DATA_DIR", str(tmp_path))
    code, _, err = run(
        capsys, "serve", "--port", "1", "--db", str(tmp_path / "f.db"), "--cds-open", *extra
    )
    assert code == 0, err
    assert seen["proxy_headers"] is bool(believed)
    assert seen["forwarded_allow_ips"] == believed
