"""Gather a patient's resources for a hook call: prefetch first, the FHIR server for the rest.

CDS Hooks 2.0.1, Prefetch: a key the client left out was not satisfied, so the service
fetches it from ``fhirServer`` with the ``fhirAuthorization`` token; a key whose value is
null means the client has no such data; an OperationOutcome (alone, or inside the Bundle)
reports a prefetch error. When required data can be got neither way the service "SHALL
respond with an HTTP 412 Precondition Failed status code" (:class:`PreconditionFailed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from b12dx.cds.fhir_servers import FhirServer, PinnedTransport, ServerRefused, check, within_base
from b12dx.cds.services import PrefetchKey
from b12dx.fhir.read import Resource
from b12dx.jsonio import loads

MAX_PAGES = 20  # a patient's search rarely needs more; a runaway paging loop stops here
# Every GET one hook call may send, all searches together: a next link that points back
# at itself, or a server that pages without end, cannot turn one call into hundreds.
MAX_REQUESTS_PER_CALL = 40
# The largest answer read from the FHIR server (a large patient's search is a few MB),
# and the most all the answers of one hook call may bring in together: the same as the
# largest CDS call a client may send with everything prefetched (web/security.py), so
# that paging cannot pin more memory for one call than one call's body can.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_BYTES_PER_CALL = 32 * 1024 * 1024


@dataclass
class _Budget:
    left: int = MAX_REQUESTS_PER_CALL
    bytes_left: int = MAX_BYTES_PER_CALL

    def take(self) -> None:
        if self.left <= 0:
            raise ValueError("the request budget of this call is spent")
        self.left -= 1

    def read(self, size: int) -> None:
        self.bytes_left -= size
        if self.bytes_left < 0:
            raise ValueError(
                f"the FHIR server's answers for this call are larger than {MAX_BYTES_PER_CALL} "
                "bytes together"
            )


class PreconditionFailed(Exception):
    """The data the service needs could not be had: answer 412."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing


@dataclass
class Gathered:
    resources: list[Resource] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)  # keys read from the FHIR server
    unavailable: list[str] = field(default_factory=list)  # optional keys nobody could give
    bytes_read: int = 0  # of the FHIR server's answers


def _resources(value: Any) -> list[Resource] | None:
    """The resources a prefetch value holds, or None when it reports an error."""
    if value is None:
        return []
    if not isinstance(value, Mapping) or not isinstance(value.get("resourceType"), str):
        return None
    if value["resourceType"] == "OperationOutcome":
        return None
    if value["resourceType"] != "Bundle":
        return [dict(value)]
    out: list[Resource] = []
    if not isinstance(value.get("entry") or [], list):
        return None  # a malformed Bundle: an error, not "no data"
    for entry in value.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            continue
        if resource.get("resourceType") == "OperationOutcome":
            search = entry.get("search") or {}
            if search.get("mode") == "outcome" and not _is_error(resource):
                continue  # a warning about the search (e.g. an unknown code), not a failure
            return None
        out.append(dict(resource))
    return out


def _is_error(outcome: Mapping[str, Any]) -> bool:
    return any(i.get("severity") in ("fatal", "error") for i in outcome.get("issue") or [])


def _fill(template: str, context: Mapping[str, Any]) -> str:
    query = template
    for name, value in context.items():
        if isinstance(value, str | int):
            query = query.replace("{{context." + name + "}}", str(value))
    return query


async def _get(client: httpx.AsyncClient, url: str, budget: _Budget) -> tuple[int, Any]:
    """(status, parsed JSON body) of one GET, reading at most MAX_RESPONSE_BYTES and
    what is left of the call's byte budget; parsed off the event loop."""
    async with client.stream("GET", url) as response:
        if response.status_code == 404:
            return 404, None
        response.raise_for_status()
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            budget.read(len(chunk))
            if size > MAX_RESPONSE_BYTES:
                raise ValueError("the FHIR server's answer is larger than the service reads")
            chunks.append(chunk)
    data = b"".join(chunks)
    del chunks
    return response.status_code, await asyncio.to_thread(loads, data, True)


async def _search(
    client: httpx.AsyncClient, base: str, query: str, budget: _Budget
) -> list[Resource]:
    url: str | None = urljoin(base.rstrip("/") + "/", query)
    out: list[Resource] = []
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        if url is None:
            return out
        if not within_base(base, url):
            # The token is for fhirServer only: a next link elsewhere, another path of the
            # same host included, is not followed.
            raise ValueError("a next page link points away from fhirServer")
        if url in seen:
            raise ValueError("a next page link repeats a page already read")
        seen.add(url)
        budget.take()
        status, body = await _get(client, url, budget)
        if status == 404 and not query.count("?"):
            return out  # a read of a resource that does not exist: no data
        if status == 404:
            raise ValueError("the FHIR server has no such search")
        page = _resources(body)
        if page is None:
            raise ValueError("the FHIR server answered with an OperationOutcome")
        out.extend(page)
        if not isinstance(body, Mapping) or not isinstance(body.get("link") or [], list):
            return out
        url = next(
            (
                link.get("url")
                for link in body.get("link") or []
                if isinstance(link, Mapping) and link.get("relation") == "next"
            ),
            None,
        )
    return out


async def gather(
    request: Mapping[str, Any],
    keys: list[PrefetchKey],
    *,
    timeout_seconds: float,
    servers: Sequence[FhirServer] = (),
) -> Gathered:
    """``servers``: the FHIR servers this caller may have the service call
    (cds/fhir_servers.py); any other fhirServer is refused."""
    """Every resource the keys ask for, from prefetch or the server; 412 when it cannot."""
    prefetch = request.get("prefetch") or {}
    if not isinstance(prefetch, Mapping):
        prefetch = {}
    context = request.get("context") or {}
    got = Gathered()
    missing: list[PrefetchKey] = []
    for key in keys:
        if key.key in prefetch:
            resources = _resources(prefetch[key.key])
            if resources is not None:
                got.resources.extend(resources)
                continue
        missing.append(key)
    if not missing:
        return got

    server = request.get("fhirServer")
    auth = request.get("fhirAuthorization")
    token = auth.get("access_token") if isinstance(auth, Mapping) else None
    why = None
    target = None
    if not (isinstance(server, str) and isinstance(token, str)):
        why = "no fhirServer with fhirAuthorization was given"
    else:
        try:
            target = await check(server, servers)
        except ServerRefused as exc:
            why = str(exc)
    if target is None:
        required = [k.key for k in missing if k.required]
        if required:
            raise PreconditionFailed(
                f"prefetch incomplete ({', '.join(required)}) and {why}", required
            )
        got.unavailable.extend(k.key for k in missing)
        return got

    assert isinstance(server, str) and isinstance(token, str)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    budget = _Budget()
    async with httpx.AsyncClient(
        headers=headers,
        timeout=timeout_seconds,
        follow_redirects=False,
        transport=PinnedTransport(target),
    ) as client:
        tasks = [_search(client, server, _fill(k.template, context), budget) for k in missing]
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*tasks, return_exceptions=True), timeout_seconds
            )
        except TimeoutError:
            names = [k.key for k in missing]
            raise PreconditionFailed(
                f"the FHIR server did not answer within {timeout_seconds:g} s", names
            ) from None
    got.bytes_read = MAX_BYTES_PER_CALL - budget.bytes_left
    failed = []
    for key, result in zip(missing, results, strict=True):
        if isinstance(result, BaseException):
            if key.required:
                failed.append(key.key)
            else:
                got.unavailable.append(key.key)
            continue
        got.resources.extend(result)
        got.fetched.append(key.key)
    if failed:
        raise PreconditionFailed(f"could not read {', '.join(failed)} from the FHIR server", failed)
    return got
