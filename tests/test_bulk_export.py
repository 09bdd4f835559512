"""A FHIR server's Bulk Data export, screened: `b12dx screen https://.../fhir/Group/ID`
against SMART's reference Bulk Data server on loopback (tests/bulk_server.py), with SMART
Backend Services authorisation by an ES384 or RS384 key; and every failure the server
can be asked to simulate (a refused kick-off, a transient status error, files it could
not make, a file gone) is a clear error with nothing screened."""

from __future__ import annotations

import base64
import csv
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from b12dx.bulk.auth import BackendAuth
from b12dx.bulk.export import EXPORT_TYPES, BulkExport, ExportTarget
from b12dx.cli.app import app
from b12dx.errors import B12dxError
from b12dx.knowledge.loader import load_knowledge
from b12dx.synth.generate import generate
from bulk_server import BulkServer
from bulk_standin import Faults, standin
from jwt_keys import public_jwk

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("bulk_server")]
GROUP = "FallonHealth"  # 3 patients in the server's data
AS_OF = "2026-12-01"


def _pem(key: Any, folder: Path) -> Path:
    path = folder / f"key-{uuid.uuid4().hex[:6]}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _client(server: BulkServer, key: Any, tmp: Path, **settings: str) -> list[str]:
    """The options of a registered client: its id, key file and key id."""
    kid = uuid.uuid4().hex
    client_id = server.register({"keys": [public_jwk(key, kid)]}, **settings)
    return ["--client-id", client_id, "--private-key", str(_pem(key, tmp)), "--key-id", kid]


def _sim(server: BulkServer, **settings: object) -> str:
    """The server's FHIR base with simulated behaviour (its base64url path segment)."""
    segment = base64.urlsafe_b64encode(json.dumps(settings).encode()).decode().rstrip("=")
    return f"{server.base}/{segment}/fhir"


def _screen(*args: str) -> Any:
    return CliRunner().invoke(app, ["screen", *args, "--as-of", AS_OF])


def _counts(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in folder.glob("*.ndjson"):
        kind = path.name.split(".")[0]
        counts[kind] = counts.get(kind, 0) + sum(1 for line in path.open() if line.strip())
    return counts


@pytest.mark.parametrize("key_fixture", ["ec_key", "rsa_key"])
def test_a_group_is_exported_with_backend_services_and_screened(
    bulk_server: BulkServer, tmp_path: Path, key_fixture: str, request: pytest.FixtureRequest
) -> None:
    key = request.getfixturevalue(key_fixture)
    out = tmp_path / "out"
    result = _screen(
        f"{bulk_server.fhir}/Group/{GROUP}", "--out", str(out), *_client(bulk_server, key, tmp_path)
    )
    assert result.exit_code == 0, result.output
    counts = _counts(out / "export")
    manifest = json.loads((out / "export" / "export-manifest.json").read_text())
    assert counts["Patient"] == 3
    assert counts == {
        o["type"]: sum(x["count"] for x in manifest["output"] if x["type"] == o["type"])
        for o in manifest["output"]
    }
    # Only the types b12dx reads were asked for (the server also holds Encounter,
    # Immunization...).
    assert set(counts) <= set(EXPORT_TYPES) and "Encounter" not in counts
    # The same files screened from the folder give the same gaps.
    again = CliRunner().invoke(
        app, ["screen", str(out / "export"), "--out", str(tmp_path / "again"), "--as-of", AS_OF]
    )
    assert again.exit_code == 0, again.output
    assert _rows(out / "gaps.csv") == _rows(tmp_path / "again" / "gaps.csv")
    assert _rows(out / "population.csv") == _rows(tmp_path / "again" / "population.csv")
    assert pq.read_table(out / "tables" / "person.parquet").num_rows == 3
    assert sum(int(r["people"]) for r in _rows(out / "population.csv")) > 0


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return sorted(csv.DictReader(f), key=lambda r: sorted(r.items()))


def test_the_export_is_deleted_on_the_server_and_since_is_passed(
    bulk_server: BulkServer, ec_key: Any, tmp_path: Path
) -> None:
    kid = uuid.uuid4().hex
    client_id = bulk_server.register({"keys": [public_jwk(ec_key, kid)]})
    auth = BackendAuth(client_id, _pem(ec_key, tmp_path), kid)
    target = ExportTarget.parse(f"{bulk_server.fhir}/Group/{GROUP}")
    assert (target.level, target.base) == ("group", bulk_server.fhir)
    everything = BulkExport(target, tmp_path / "all", auth, sleep=lambda _s: None)
    everything.run()
    assert everything.status_url is not None
    with httpx.Client() as c:
        token = auth.token(c, target.base)
        gone = c.get(everything.status_url, headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 404, "the export was not deleted"
    recent = BulkExport(target, tmp_path / "recent", auth, since="2015-01-01T00:00:00Z")
    recent.run()
    assert 0 < sum(_counts(tmp_path / "recent").values()) < sum(_counts(tmp_path / "all").values())


def test_fhir_import_reads_the_same_url(bulk_server: BulkServer, tmp_path: Path) -> None:
    """An open server (no client id): fhir-import builds one record per patient."""
    done = CliRunner().invoke(
        app, ["fhir-import", f"{bulk_server.fhir}/Group/{GROUP}", "--out", str(tmp_path / "o")]
    )
    assert done.exit_code == 0, done.output
    assert len(list((tmp_path / "o").glob("*.json"))) == 3 + 1  # records + import-report.json


def test_a_transient_status_error_is_asked_again(bulk_server: BulkServer, tmp_path: Path) -> None:
    url = f"{_sim(bulk_server, err='transient_error')}/Group/{GROUP}"
    result = _screen(url, "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("sim", "said"),
    [
        ({"err": "file_generation_failed"}, "refused the export (HTTP 500"),
        ({"err": "some_file_generation_failed"}, "reported errors in the export"),
        ({"err": "file_expired"}, "could not be downloaded (HTTP 410"),
    ],
)
def test_a_failed_export_is_a_clear_error_and_nothing_is_screened(
    bulk_server: BulkServer, tmp_path: Path, sim: dict[str, str], said: str
) -> None:
    out = tmp_path / "o"
    result = _screen(f"{_sim(bulk_server, **sim)}/Group/{GROUP}", "--out", str(out))
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert not (out / "gaps.csv").exists()
    assert not list(out.rglob("*.ndjson")), "a partial export was left"


def test_a_client_the_server_does_not_know_is_refused(
    bulk_server: BulkServer, ec_key: Any, rsa_key: Any, tmp_path: Path
) -> None:
    options = _client(bulk_server, ec_key, tmp_path)
    options[3] = str(_pem(rsa_key, tmp_path))  # signed by a key the server was not given
    result = _screen(f"{bulk_server.fhir}/Group/{GROUP}", "--out", str(tmp_path / "o"), *options)
    assert result.exit_code == 2
    assert "the token endpoint refused client" in result.output
    assert "-----BEGIN" not in result.output


# -- what the reference server cannot be made to do: a stand-in (tests/bulk_standin.py) --


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("population")
    generate(40, folder, "ndjson", seed=3, kb=load_knowledge())
    return folder


def test_a_download_broken_half_way_is_resumed(small_export: Path, tmp_path: Path) -> None:
    with standin(small_export, Faults(break_after=300)) as server:
        result = _screen(server.fhir, "--out", str(tmp_path / "o"))
        assert result.exit_code == 0, result.output
        assert server.range_requests == 1 and server.deleted == 1
    assert _counts(tmp_path / "o" / "export") == _counts(small_export)


def test_a_file_shorter_than_its_manifest_is_refused(small_export: Path, tmp_path: Path) -> None:
    with standin(small_export, Faults(short_by=1)) as server:
        result = _screen(f"{server.fhir}/Group/all", "--out", str(tmp_path / "o"))
        assert server.kicked_off[0].startswith("/fhir/Group/all/$export?_type=Patient")
        assert server.deleted == 1
    assert result.exit_code == 2
    assert "the manifest says" in result.output
    assert (
        not list((tmp_path / "o").rglob("*.ndjson")) and not (tmp_path / "o" / "gaps.csv").exists()
    )


@pytest.mark.parametrize(
    ("faults", "said"),
    [
        (Faults(first_type="../../escaped"), "without a resource type"),
        (Faults(status_host="localhost"), "sent the export's status to another address"),
    ],
)
def test_a_server_cannot_choose_where_files_or_tokens_go(
    small_export: Path, tmp_path: Path, faults: Faults, said: str
) -> None:
    """A manifest's type names a file: a path in it is refused, not followed; a status URL
    on another address would get the access token on every poll: refused."""
    with standin(small_export, faults) as server:
        result = _screen(server.fhir, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and said in result.output
    assert not list(tmp_path.rglob("escaped*")) and not list(tmp_path.rglob("*.ndjson"))


@pytest.mark.parametrize(
    ("faults", "said"),
    [
        (Faults(gzip_manifest=True), "not JSON with an output list"),
        (Faults(manifest_padding=11 * 1024 * 1024), "more than 10485760 bytes of JSON"),
        # 100,000 levels in 200 kB: Python's own reader ran out of recursion (a traceback).
        (Faults(manifest_depth=100_000), "not JSON with an output list"),
        (
            Faults(refuse_with="\x1b]0;owned\x07\x1b[2Jexport complete" + "x" * 5000),
            "export complete",
        ),
    ],
)
def test_what_a_server_sends_is_bounded_and_printed_safely(
    small_export: Path, tmp_path: Path, faults: Faults, said: str
) -> None:
    """A compressed answer is not unpacked (asked for as it is), a JSON answer is read to
    10 MB at most, and a server's words reach the console without terminal escapes and
    cut short."""
    with standin(small_export, faults) as server:
        result = _screen(server.fhir, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and said in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert len(result.output) < 1000


def test_a_relative_status_url_is_the_servers_own_and_a_rerun_keeps_no_old_files(
    small_export: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    with standin(small_export, Faults(relative_status=True)) as server:
        target = ExportTarget.parse(server.fhir)
        BulkExport(target, folder, sleep=lambda _s: None).run()
    first = _counts(folder)
    (folder / "Observation.999.ndjson").write_text('{"resourceType": "Observation"}\n')
    with standin(small_export) as server:
        BulkExport(ExportTarget.parse(server.fhir), folder, sleep=lambda _s: None).run()
    assert _counts(folder) == first, "a file of an earlier export was kept"


def test_a_token_endpoint_on_another_address_is_not_used(
    small_export: Path, ec_key: Any, tmp_path: Path
) -> None:
    """A server that names another EHR's token endpoint would have b12dx fetch a real
    token there and send it back: only the server's own endpoint (or --token-url)."""
    elsewhere = "http://127.0.0.2:9/auth/token"
    with standin(small_export, Faults(token_endpoint=elsewhere)) as server:
        auth = BackendAuth("client", _pem(ec_key, tmp_path))
        with httpx.Client() as c, pytest.raises(B12dxError, match="another address"):
            auth.token(c, server.fhir)
    plain = BackendAuth("client", _pem(ec_key, tmp_path), token_url="http://ehr.example/token")
    with httpx.Client() as c, pytest.raises(B12dxError, match="not https"):
        plain.token(c, "https://ehr.example/fhir")
