"""The FHIR server allowlist of the CDS service (b12dx.cds.fhir_servers): what an entry
allows, which addresses count as public, and how the issuers file and the environment
give the list."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from b12dx.cds.auth import load_issuers
from b12dx.cds.fhir_servers import (
    FhirServer,
    ServerRefused,
    check,
    is_public,
    parse_servers,
    servers_from_env,
)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://ehr.example.org/fhir/r4", True),
        ("https://ehr.example.org/fhir/r4/", True),
        ("https://EHR.example.org./fhir/r4/Patient", True),
        ("https://ehr.example.org:443/fhir/r4", True),
        ("https://ehr.example.org/fhir/r4x", False),  # a path prefix, not a string prefix
        ("https://ehr.example.org/fhir", False),
        ("http://ehr.example.org/fhir/r4", False),  # another scheme
        ("https://ehr.example.org:8443/fhir/r4", False),  # another port
        ("https://ehr.example.org.evil.example/fhir/r4", False),
        ("https://user@ehr.example.org/fhir/r4", False),
        ("not a url", False),
    ],
)
def test_an_entry_allows_its_own_origin_and_path_only(url: str, allowed: bool) -> None:
    assert FhirServer("https://ehr.example.org/fhir/r4").allows(url) is allowed


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata (link-local)
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("224.0.0.1", False),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_plain_http_and_odd_urls_are_refused_as_entries() -> None:
    with pytest.raises(ValueError, match="plain http needs"):
        FhirServer("http://ehr.example.org/fhir")
    assert FhirServer("http://127.0.0.1:8080/fhir", private=True).private
    with pytest.raises(ValueError, match="no query"):
        FhirServer("https://ehr.example.org/fhir?x=1")
    with pytest.raises(ValueError, match=r"\[1\]: unknown field"):
        parse_servers(["https://a.example/fhir", {"url": "https://b.example", "x": 1}], "l")


def test_a_name_resolving_to_loopback_is_refused_unless_the_entry_is_private() -> None:
    public_only = (FhirServer("https://localhost:9/fhir"),)
    with pytest.raises(ServerRefused):
        asyncio.run(check("https://localhost:9/fhir", public_only))
    private = (FhirServer("https://localhost:9/fhir", private=True),)
    target = asyncio.run(check("https://localhost:9/fhir/Patient/1", private))
    assert target.host == "localhost" and not is_public(target.address)
    with pytest.raises(ServerRefused):
        asyncio.run(check("https://localhost:10/fhir", private))  # not on the list


def test_the_issuers_file_and_the_environment_give_the_list(tmp_path: Path) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(
        json.dumps(
            {
                "issuers": [
                    {
                        "iss": "ehr",
                        "jwks_url": "https://ehr.example.org/jwks",
                        "fhir_servers": [
                            "https://ehr.example.org/fhir",
                            {"url": "http://10.0.0.2/fhir", "private": True},
                        ],
                    }
                ]
            }
        )
    )
    (issuer,) = load_issuers(path)
    assert [s.url for s in issuer.fhir_servers] == [
        "https://ehr.example.org/fhir",
        "http://10.0.0.2/fhir",
    ]
    path.write_text(
        json.dumps(
            {
                "issuers": [
                    {"iss": "e", "jwks_url": "https://ehr.example.org/jwks", "fhir_servers": "x"}
                ]
            }
        )
    )
    with pytest.raises(ValueError, match=r"issuers\[0\]\.fhir_servers: expected a list"):
        load_issuers(path)
    env = servers_from_env('[{"url": "http://127.0.0.1:8080/fhir", "private": true}]')
    assert env[0].private and servers_from_env(None) == ()
    with pytest.raises(ValueError, match="B12DX_CDS_FHIR_SERVERS"):
        servers_from_env("https://not-json")
