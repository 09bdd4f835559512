"""The reverse proxy the documentation gives (deploy/nginx/b12dx.conf, shown in
docs/followup.md), run as shipped in front of a real `b12dx serve` on loopback: TLS ends
at nginx, sign-in works through it with Secure cookies and the public URL, a client's own
X-Forwarded-For never chooses its address, and slow or half-sent clients are held by nginx
while /api/v1/health answers within 1 s (docs/security.md "Behind a reverse proxy")."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hostile import HealthPoller, connect
from processes import READY_S, b12dx_command, free_port, start_serve, tail

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reverse_proxy")]

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "deploy" / "nginx" / "b12dx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PASSWORD = "mauve-kettle-orbit-41"


@dataclass
class Proxied:
    url: str  # https://localhost:PORT, the public URL
    port: int
    http_port: int
    b12dx_log: Path
    nginx_log: Path


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (the proxy's TLS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem, key_pem = folder / "cert.pem", folder / "key.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem, key_pem


def _once(text: str, old: str, new: str) -> str:
    """The shipped file with one line changed for this machine; the line must be there
    exactly once, so an edit of the file that this test no longer runs fails here."""
    assert text.count(old) == 1, f"deploy/nginx/b12dx.conf no longer has {old!r} once"
    return text.replace(old, new)


def _nginx_config(folder: Path, https_port: int, http_port: int, upstream: int) -> Path:
    cert, key = _certificate(folder)
    site = CONF.read_text()
    site = _once(site, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    site = _once(site, "listen 80;", f"listen 127.0.0.1:{http_port};")
    site = _once(site, "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    site = _once(site, "/etc/ssl/certs/b12dx.example.org.pem", str(cert))
    site = _once(site, "/etc/ssl/private/b12dx.example.org.key", str(key))
    (folder / "b12dx.conf").write_text(site)
    temp = folder / "temp"
    temp.mkdir()
    # What Debian's /etc/nginx/nginx.conf gives around conf.d, with this folder's paths.
    main = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {folder}/b12dx.conf;
}}
"""
    path = folder / "nginx.conf"
    path.write_text(main)
    return path


def _run(*args: str, stdin: str | None = None, env: dict[str, str]) -> None:
    done = subprocess.run(
        [*b12dx_command(), *args], input=stdin, text=True, capture_output=True, env=env
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed (scripts/check installs it with apt-get)")
    tmp = tmp_path_factory.mktemp("proxy")
    env = os.environ | {"B12DX_DATA_DIR": str(tmp / "data")}
    db = str(tmp / "f.sqlite3")
    _run("practice", "add", "Riverside Surgery", "--db", db, env=env)
    for user in ("nurse.a", "nurse.b"):
        _run(
            "user", "add", user, "--practice", "Riverside Surgery", "--db", db,
            "--password-stdin", stdin=PASSWORD + "\n", env=env,
        )  # fmt: skip
    upstream, https_port, http_port = free_port(), free_port(), free_port()
    url = f"https://localhost:{https_port}"
    nginx_log = tmp / "nginx" / "error.log"
    serve = start_serve(
        tmp, "--host", "127.0.0.1", "--db", db, "--public-url", url,
        "--trusted-proxies", "127.0.0.1", "--cds-open", port=upstream,
    )  # fmt: skip
    (tmp / "nginx").mkdir()
    config = _nginx_config(tmp / "nginx", https_port, http_port, upstream)
    nginx = subprocess.Popen(
        [NGINX, "-p", str(tmp / "nginx"), "-c", str(config), "-e", str(nginx_log),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for_tls(https_port, nginx, nginx_log)
        yield Proxied(url, https_port, http_port, serve.log, nginx_log)
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)
        serve.stop()


def _wait_for_tls(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_S
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if (
                httpx.get(f"https://localhost:{port}/api/v1/health", verify=False).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"nginx did not forward health (exit {proc.poll()}):\n{tail(log)}")


def _client(p: Proxied) -> httpx.Client:
    return httpx.Client(base_url=p.url, verify=False, timeout=30)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def _sign_in(c: httpx.Client, user: str, password: str, **headers: str) -> httpx.Response:
    page = c.get("/login", headers=headers)
    return c.post(
        "/login",
        data={"csrf_token": _csrf(page.text), "username": user, "password": password},
        headers={"Origin": str(c.base_url), **headers},
    )


def test_plain_http_goes_to_https(proxied: Proxied) -> None:
    r = httpx.get(f"http://127.0.0.1:{proxied.http_port}/patients?x=1")
    assert r.status_code == 301 and r.headers["location"] == "https://127.0.0.1/patients?x=1"


def test_sign_in_through_the_proxy_uses_secure_cookies_and_the_public_url(
    proxied: Proxied,
) -> None:
    """Behind the proxy every request arrives from 127.0.0.1, yet sign-in is required,
    and a nurse signs in through TLS: the session cookie is Secure and works."""
    with _client(proxied) as c:
        first = c.get("/patients")
        assert first.status_code == 303 and first.headers["location"].startswith("/login")
        signed = _sign_in(c, "nurse.a", PASSWORD)
        assert signed.status_code == 303, signed.text[-500:]
        cookie = signed.headers["set-cookie"]
        assert "secure" in cookie.lower() and "httponly" in cookie.lower()
        page = c.get("/patients")
        assert page.status_code == 200 and "Riverside Surgery" in page.text
        assert page.headers["strict-transport-security"].startswith("max-age=")


def test_a_clients_own_forwarded_for_does_not_choose_its_address(proxied: Proxied) -> None:
    """Five wrong passwords hold up the sender for that username; a new made-up
    X-Forwarded-For on each try does not make it a new sender (nginx sets the header)."""
    with _client(proxied) as c:
        for i in range(5):
            wrong = _sign_in(c, "nurse.b", "not the password", **{"X-Forwarded-For": f"10.0.0.{i}"})
            assert wrong.status_code == 401
        held = _sign_in(c, "nurse.b", PASSWORD, **{"X-Forwarded-For": "10.9.9.9"})
        assert held.status_code == 429


def test_an_oversized_body_is_refused_by_the_proxy(proxied: Proxied) -> None:
    before = proxied.b12dx_log.read_text()
    with _client(proxied) as c:
        r = c.post(
            "/cds-services/b12dx-patient-view",
            content=b"{" + b" " * (34 * 1024 * 1024) + b"}",
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 413
    assert proxied.b12dx_log.read_text() == before, "b12dx never saw it"


def test_half_sent_requests_and_slow_bodies_are_held_by_the_proxy(proxied: Proxied) -> None:
    """400 requests whose head never ends and 100 bodies sent a byte at a time from one
    address, all held open: nginx holds them (b12dx sees none), that address gets no more
    than its share of requests under way (503 beyond it), and health asked from another
    address answers within 1 s throughout."""
    health = HealthPoller(proxied.port, tls=True, source="127.0.0.2")
    thread = threading.Thread(target=health.run, daemon=True)
    thread.start()
    before = proxied.b12dx_log.read_text()
    held: list[socket.socket] = []
    try:
        for _ in range(400):
            s = connect(proxied.port, tls=True)
            s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            held.append(s)
        for _ in range(100):
            s = connect(proxied.port, tls=True)
            s.sendall(
                b"POST /api/v1/assess HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            held.append(s)
        for _ in range(3):
            time.sleep(1)
            for s in held[400:]:
                s.sendall(b" ")
        with _client(proxied) as c:
            assert c.get("/api/v1/health").status_code == 503, "beyond the address's share"
    finally:
        for s in held:
            s.close()
        health.stop.set()
        thread.join(timeout=10)
    after = proxied.b12dx_log.read_text()[len(before) :]
    assert "/api/v1/assess" not in after, "a body still being sent reached b12dx"
    assert health.times and max(health.times) < 1.0, f"health up to {max(health.times):.2f} s"


def test_the_documentation_shows_the_file_the_suite_runs() -> None:
    assert CONF.read_text() in (ROOT / "docs" / "followup.md").read_text()
