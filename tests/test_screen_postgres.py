"""An OMOP CDM screened where it is kept: in PostgreSQL, through a read-only login.

OHDSI's Eunomia sample and the hand-built OHDSI folder of tests/test_screen_eunomia.py
are loaded into a real PostgreSQL server (the suite's own, tests/pg.py), typed as the
CDM's DDL types them, the vocabulary in a schema of its own; `b12dx screen
postgresql://...` then gives the same gaps, reasons and counts as the same tables
screened from their folder, writes nothing to the CDM, writes the gaps to the results
schema when asked, and never prints the password."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from typer.testing import CliRunner

from b12dx.cli.app import app
from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.cdm_database import load_scanner
from b12dx.synth.generate import generate
from omop_tables import cdm_type, screened, unzip_eunomia
from pg import PostgresServer
from test_screen_eunomia import AS_OF, _ohdsi_folder, _untested

D = dt.date
pytestmark = pytest.mark.slow
VOCABULARY = {"concept", "concept_relationship", "concept_ancestor"}
PASSWORD = "s3cret-in-the-url"
EUNOMIA_AS_OF = D(2021, 6, 30)  # within the sample's observation periods


def _load(pg_url: str, folder: Path, *, vocabulary_schema: str = "vocab") -> str:
    """Each CSV of ``folder`` into schema cdm (the vocabulary into ``vocabulary_schema``),
    typed; a results schema; a login ``reader_<database>`` that may read the CDM and vocabulary and
    create tables in results only. The reader's libpq URL, with a password in it."""
    socket_dir = pg_url.split("host=")[1]
    database = pg_url.split("@/")[1].split("?")[0]
    owner = f"postgresql://postgres@/{database}?host={socket_dir}"
    con = duckdb.connect()
    load_scanner(con)
    con.execute(f"ATTACH '{owner}' AS pg (TYPE postgres)")
    for schema in {"cdm", vocabulary_schema, "results"}:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS pg.{schema}")
    for path in sorted(folder.glob("*.csv")):
        table = path.stem.lower()
        schema = vocabulary_schema if table in VOCABULARY else "cdm"
        reader = f"read_csv('{path}', header = true, all_varchar = true)"
        names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
        columns = ", ".join(f'CAST("{n}" AS {cdm_type(n.lower())}) AS "{n.lower()}"' for n in names)
        con.execute(f"CREATE TABLE pg.{schema}.{table} AS SELECT {columns} FROM {reader}")
    con.close()
    reader = f"reader_{database}"  # roles belong to the whole server
    with psycopg.connect(owner, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {reader} LOGIN")
        for schema in {"cdm", vocabulary_schema}:
            admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {reader}")
            admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}")
        admin.execute(f"GRANT USAGE, CREATE ON SCHEMA results TO {reader}")
    return f"postgresql://{reader}:{PASSWORD}@/{database}?host={socket_dir}"


def _screen(
    source: str, out: Path, *extra: str, as_of: D = AS_OF
) -> tuple[dict[str, list[dict[str, str]]], str]:
    result = CliRunner().invoke(
        app, ["screen", source, "--out", str(out), "--as-of", as_of.isoformat(), *extra]
    )
    assert result.exit_code == 0, result.output
    return screened(out), result.output


def _cdm_state(url: str) -> list[tuple[Any, ...]]:
    """Every table of the CDM and vocabulary schemas with its row count."""
    with psycopg.connect(url.replace(f":{PASSWORD}", "")) as conn:
        names = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('cdm', 'vocab') ORDER BY 1, 2"
        ).fetchall()
        return [
            (s, t, conn.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()) for s, t in names
        ]


@pytest.fixture(scope="module")
def eunomia_pg(
    pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("eunomia")
    unzip_eunomia(folder)
    return folder, _load(pg_server.new_database(), folder)


def test_eunomia_in_postgres_gives_the_gaps_of_its_csv_folder(
    eunomia_pg: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = eunomia_pg
    before = _cdm_state(url)
    from_files, _ = _screen(str(folder), tmp_path / "files", as_of=EUNOMIA_AS_OF)
    from_db, output = _screen(
        url, tmp_path / "db", "--cdm-schema", "cdm", "--vocabulary-schema", "vocab",
        "--results-schema", "results", as_of=EUNOMIA_AS_OF,
    )  # fmt: skip
    assert from_db == from_files
    assert sum(int(r["people"]) for r in from_db["population"]) > 10
    assert PASSWORD not in output and ":***@" in output
    assert _cdm_state(url) == before, "the CDM was written to"


@pytest.mark.parametrize("ancestors", [True, False])
def test_the_hidden_concepts_hold_in_the_database(
    pg_server: PostgresServer, tmp_path: Path, ancestors: bool
) -> None:
    """A product found through concept_ancestor (or not, without it), a retired concept
    through its successor, observation periods and the provenance filter, as from files."""
    folder = _ohdsi_folder(tmp_path / "ohdsi", ancestors=ancestors)
    url = _load(pg_server.new_database(), folder)
    for extra in ((), ("--omop-type-concepts", "32817")):
        from_files, _ = _screen(str(folder), tmp_path / f"files{len(extra)}", *extra)
        from_db, _ = _screen(url, tmp_path / f"db{len(extra)}", "--cdm-schema", "cdm",
                             "--vocabulary-schema", "vocab", *extra)  # fmt: skip
        assert from_db == from_files
    untested = _untested(from_db["gaps"])
    # 2 is outside observation, 6 was tested; 4's claim-only test is filtered out.
    assert untested == ({"1", "3", "4"} if ancestors else set())


def _fails(*args: str) -> str:
    result = CliRunner().invoke(app, ["screen", *args])
    assert result.exit_code == 2, result.output
    return result.output


def test_a_database_input_names_what_is_wrong(eunomia_pg: tuple[Path, str], tmp_path: Path) -> None:
    _, url = eunomia_pg
    out = str(tmp_path / "o")
    assert "--cdm-schema: required" in _fails(url, "--out", out)
    wrong = _fails(url, "--out", out, "--cdm-schema", "nope")
    assert "no schema 'nope'" in wrong and "cdm" in wrong and PASSWORD not in wrong
    assert "pg_catalog" not in wrong
    assert "not a schema name" in _fails(url, "--out", out, "--cdm-schema", 'x"; drop')
    # The vocabulary in a schema of its own, not named: the codes would be read from the
    # source values alone, so the screen stops and says where to look.
    novocab = _fails(url, "--out", out, "--cdm-schema", "cdm")
    assert "no concept table: add --vocabulary-schema vocab" in novocab
    unreachable = url.replace("/b12dx_test", "/no_such_database")
    message = _fails(unreachable, "--out", out, "--cdm-schema", "cdm")
    assert "cannot connect" in message and PASSWORD not in message
    # A password given twice (the user part and a parameter): neither is shown.
    twice = unreachable.replace("?host=", "?password=other-s3cret&host=")
    message = _fails(twice, "--out", out, "--cdm-schema", "cdm")
    assert PASSWORD not in message and "other-s3cret" not in message
    assert "only used with a PostgreSQL INPUT" in _fails(
        str(tmp_path), "--out", out, "--cdm-schema", "cdm"
    )


def test_a_results_schema_the_login_cannot_write_is_refused_before_screening(
    eunomia_pg: tuple[Path, str], tmp_path: Path
) -> None:
    _, url = eunomia_pg
    out = tmp_path / "o"
    message = _fails(
        url, "--out", str(out), "--cdm-schema", "cdm", "--vocabulary-schema",
        "vocab", "--results-schema", "cdm", "--as-of", AS_OF.isoformat(),
    )  # fmt: skip
    assert 'may not write "cdm".b12dx_gaps' in message
    assert 'GRANT USAGE, CREATE ON SCHEMA "cdm" TO reader_' in message
    assert PASSWORD not in message
    assert not (out / "gaps.csv").exists(), "the screen ran before the refusal"
    missing = _fails(url, "--out", str(out), "--cdm-schema", "cdm", "--vocabulary-schema",
                     "vocab", "--results-schema", "nosuch")  # fmt: skip
    assert "has no schema 'nosuch'" in missing


def test_the_results_table_joins_the_cdm_and_keeps_its_grants_and_views(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    """The gaps of a synthetic population in results.b12dx_gaps: person_id joins
    cdm.person as it is, through an index; a second run replaces the rows in the same
    table, so a grant to another analyst and a view on it stay; a run that screens nobody
    leaves it as it was."""
    folder = tmp_path / "omop"
    folder.mkdir()
    generate(400, folder, "omop", seed=5, as_of=AS_OF, kb=load_knowledge())
    url = _load(pg_server.new_database(), folder)
    options = ("--cdm-schema", "cdm", "--vocabulary-schema", "vocab", "--results-schema", "results")
    first, _ = _screen(url, tmp_path / "one", *options)
    owner = "postgresql://postgres@/" + url.split("@/", 1)[1]
    with psycopg.connect(owner, autocommit=True) as conn:
        joined = conn.execute(
            "SELECT count(*) FROM results.b12dx_gaps g JOIN cdm.person p USING (person_id)"
        ).fetchone()
        assert joined is not None and joined == (len(first["gaps"]),) and joined[0] > 0
        indexed = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'results' "
            "AND tablename = 'b12dx_gaps'"
        ).fetchall()
        assert any(d.endswith("(person_id)") for (d,) in indexed), indexed
        database = url.split("@/", 1)[1].split("?")[0]
        colleague = f"colleague_{database}"
        conn.execute(
            "CREATE VIEW results.untested AS SELECT person_id FROM results.b12dx_gaps "
            "WHERE gap = 'untested_at_risk'"
        )
        conn.execute(f"CREATE ROLE {colleague}")
        conn.execute(f"GRANT SELECT ON results.b12dx_gaps TO {colleague}")
        oid = conn.execute("SELECT 'results.b12dx_gaps'::regclass::oid").fetchone()
        # As a table made before the index was: the next run, by its owner, adds it.
        conn.execute("DROP INDEX results.b12dx_gaps_person_id")
    later = AS_OF.replace(year=AS_OF.year + 1)
    second, _ = _screen(url, tmp_path / "two", *options, as_of=later)
    with psycopg.connect(owner) as conn:
        rows = conn.execute("SELECT count(*), min(as_of), max(as_of) FROM results.b12dx_gaps")
        assert rows.fetchone() == (len(second["gaps"]), later, later)
        assert conn.execute("SELECT 'results.b12dx_gaps'::regclass::oid").fetchone() == oid
        assert conn.execute(
            f"SELECT has_table_privilege('{colleague}', 'results.b12dx_gaps', 'SELECT')"
        ).fetchone() == (True,)
        assert conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'b12dx_gaps_person_id'"
        ).fetchone() == (1,)
        note = conn.execute("SELECT obj_description('results.b12dx_gaps'::regclass)").fetchone()
        assert note is not None and f"as of {later}" in str(note[0])
    _, output = _screen(url, tmp_path / "three", *options, as_of=dt.date(1900, 1, 1))
    assert "left results.b12dx_gaps as it was: nobody was screened" in output
    with psycopg.connect(owner) as conn:
        kept = conn.execute("SELECT count(*) FROM results.b12dx_gaps").fetchone()
    assert kept == (len(second["gaps"]),)


def test_a_results_schema_named_with_a_dollar_sign_is_written(
    eunomia_pg: tuple[Path, str], tmp_path: Path
) -> None:
    """PostgreSQL allows $ in a name, and so does --results-schema: the statement that
    makes the table is not cut short by it."""
    _, url = eunomia_pg
    owner = "postgresql://postgres@/" + url.split("@/", 1)[1]
    reader = url.split("://", 1)[1].split(":", 1)[0]
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "r$b12dx$"')
        conn.execute(f'GRANT USAGE, CREATE ON SCHEMA "r$b12dx$" TO {reader}')
    _screen(url, tmp_path / "o", "--cdm-schema", "cdm", "--vocabulary-schema", "vocab",
            "--results-schema", "r$b12dx$", as_of=EUNOMIA_AS_OF)  # fmt: skip
    with psycopg.connect(owner) as conn:
        made = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'r$b12dx$' "
            "AND tablename = 'b12dx_gaps' AND indexdef LIKE '%(person_id)'"
        ).fetchone()
    assert made == (1,)
