"""The package as a hospital's engineer installs it: the wheel and sdist built from this
checkout, the wheel installed into a clean virtual environment with the core only
(``pip install b12dx``), then with the ``store`` extra. The core runs ``assess``,
``explain`` and FHIR input from its own copy of the knowledge base; a command that needs
an extra says which one to install and exits 2.

Installs come from the versions in constraints.txt (uv, from its cache or the package
index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"
# A FHIR Bundle as an EHR sends it (a breathless 45-year-old with a B12 result).
CASE = ROOT / "tests" / "reviewer_cases" / "r2_29_breathless_3days_fhir_obs_45F.json"
# What the core must not bring: the heavy parts live in the extras.
HEAVY = {
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "ibis-framework",
    "duckdb",
    "pyarrow",
    "pandas",
    "numpy",
    "pyspark",
    "argon2-cffi",
    "httpx",
    "pyjwt",
}

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("package")]


def _run(*args: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, check=False, **kw
    )  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    done = _run(UV, "build", "--quiet", "--out-dir", out, ROOT)
    assert done.returncode == 0, done.stderr
    return {
        "wheel": next(out.glob("b12dx-*.whl")),
        "sdist": next(out.glob("b12dx-*.tar.gz")),
    }


def _env(tmp: Path, name: str, requirement: str) -> Path:
    venv = tmp / name
    made = _run(UV, "venv", "--quiet", "--python", sys.executable, venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run(
        UV,
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "--constraint",
        ROOT / "constraints.txt",
        requirement,
    )
    assert installed.returncode == 0, installed.stderr
    return venv


@pytest.fixture(scope="module")
def core(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _env(tmp_path_factory.mktemp("core"), "venv", str(built["wheel"]))


def _b12dx(venv: Path, *args: str, stdin: str | None = None, cwd: Path | None = None):
    # A private knowledge cache, and a working folder outside the checkout so that
    # nothing is read from the source tree.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B12DX_", "PYTHON"))}
    env["B12DX_CACHE_DIR"] = str(venv / "cache")
    return _run(venv / "bin" / "b12dx", *args, input=stdin, env=env, cwd=cwd or venv)


def test_the_wheel_and_sdist_hold_the_knowledge_base_and_web_files(built: dict[str, Path]) -> None:
    names = zipfile.ZipFile(built["wheel"]).namelist()
    yaml = {n for n in names if n.startswith("b12dx/knowledge/data/") and n.endswith(".yaml")}
    shipped = {
        f"b12dx/knowledge/data/{p.name}" for p in (ROOT / "src/b12dx/knowledge/data").glob("*.yaml")
    }
    assert yaml == shipped
    assert "b12dx/py.typed" in names and "b12dx/web/templates/check.html" in names
    with tarfile.open(built["sdist"]) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    assert {"pyproject.toml", "README.md", "LICENSE", "constraints.txt"} <= members
    assert not any(m.startswith((".venv", "dist/")) for m in members)


def test_the_core_is_small_and_assesses_from_its_own_copy(core: Path) -> None:
    listed = _run(UV, "pip", "list", "--format", "json", "--python", core / "bin" / "python")
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "b12dx" in names and "pydantic" in names
    assert not names & HEAVY, f"the core brings {sorted(names & HEAVY)}"

    version = _b12dx(core, "--version")
    assert version.returncode == 0 and "engine" in version.stdout, version.stderr
    example = _b12dx(core, "example", "metformin_neuropathy")
    assert example.returncode == 0, example.stderr
    answer = _b12dx(core, "assess", "-", "--json", stdin=example.stdout)
    assert answer.returncode == 0, answer.stderr
    result = json.loads(answer.stdout)
    assert result["schema_version"] == "1" and result["urgency"] in {"urgent", "soon"}
    shown = _b12dx(core, "assess", "-", stdin=example.stdout)
    assert shown.returncode == 0 and "B12" in shown.stdout
    case = json.loads(CASE.read_text())
    fhir = _b12dx(
        core, "assess", "-", "--json", "--as-of", case["as_of"], stdin=json.dumps(case["bundle"])
    )
    assert fhir.returncode == 0, fhir.stderr
    assert [lab["test"] for lab in json.loads(fhir.stdout)["labs"]] == ["total_b12"]
    explained = _b12dx(core, "explain", "paresthesia")
    assert explained.returncode == 0 and "seed-weakness" in explained.stdout


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["serve", "--port", "0"], "web"),
        (["patient", "list", "--db", "x.db"], "store"),
        (["due", "--db", "x.db"], "store"),
        (["screen", "in", "--out", "out"], "screen"),
        (["synth", "--patients", "5", "--out", "out"], "screen"),
    ],
)
def test_a_command_without_its_extra_says_which_to_install(
    core: Path, args: list[str], extra: str
) -> None:
    done = _b12dx(core, *args)
    assert done.returncode == 2, done.stderr
    assert f"pip install 'b12dx[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (core / "x.db").exists() and not (core / "out").exists()


def test_the_store_extra_adds_the_follow_up_commands(
    built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    venv = _env(tmp_path_factory.mktemp("store"), "venv", f"{built['wheel']}[store]")
    added = _b12dx(
        venv,
        "patient",
        "add",
        "--db",
        "f.db",
        "--name",
        "Ann Example",
        "--birth-date",
        "1960-01-31",
        "--sex",
        "female",
    )
    assert added.returncode == 0, added.stderr
    listed = _b12dx(venv, "patient", "list", "--db", "f.db")
    assert listed.returncode == 0 and "Ann Example" in listed.stdout, listed.stderr
    web = _b12dx(venv, "serve", "--port", "0")
    assert web.returncode == 2 and "pip install 'b12dx[web]'" in web.stderr
