"""This machine's loopback interface, told one way everywhere: servers bind to it unless
told otherwise (web, CDS Hooks, Spark's driver), and plain http is allowed only to it."""

from __future__ import annotations

import ipaddress

LOOPBACK = "127.0.0.1"  # where every server of b12dx listens by default
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine's loopback interface."""
    if host is None:
        return False
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
