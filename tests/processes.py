"""Running b12dx as its users do, in a process of its own: the command, and a free
loopback port for a server."""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def b12dx_command() -> list[str]:
    """The installed ``b12dx`` beside this Python, else the module run by it."""
    script = Path(sys.executable).parent / "b12dx"
    return [str(script)] if script.exists() else [sys.executable, "-m", "b12dx.cli.app"]
