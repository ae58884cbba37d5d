"""The set-up script (tools/bootstrap.py) behind a failing or TLS-inspecting network, offline.

A package index on loopback stands in for PyPI behind a company proxy: HTTPS with a certificate
from a private CA. Without that CA the bootstrap must stop naming the step and what to check;
with the CA trusted the way the machine trusts it (SSL_CERT_FILE), it must install from there.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import io
import os
import ssl
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.bootstrap import BootstrapError, check_python

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = ROOT / "tools" / "bootstrap.py"


def _tiny_wheel() -> tuple[str, bytes]:
    name = "tinypkg-1.0-py3-none-any.whl"
    files = {
        "tinypkg/__init__.py": b"VALUE = 42\n",
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append("tinypkg-1.0.dist-info/RECORD,,")
    files["tinypkg-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return name, buffer.getvalue()


def _private_ca_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a 127.0.0.1 certificate it signed, as a TLS-inspecting proxy presents."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, issuer: str, public: ec.EllipticCurvePublicKey,
              signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("Corporate Proxy Test CA", "Corporate Proxy Test CA", ca_key.public_key(), ca_key, True)
    leaf = build("127.0.0.1", "Corporate Proxy Test CA", leaf_key.public_key(), ca_key, False)
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return ca_path, cert_path, key_path


class _Index:
    """A PEP 503 simple index over HTTPS on loopback serving one wheel; records request paths."""

    def __init__(self, directory: Path) -> None:
        self.ca, cert, key = _private_ca_cert(directory)
        wheel_name, wheel = _tiny_wheel()
        self.paths: list[str] = []
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index.paths.append(self.path)
                if self.path.rstrip("/") == "/simple/tinypkg":
                    body = f'<a href="/files/{wheel_name}">{wheel_name}</a>'.encode()
                    kind = "text/html"
                elif self.path == f"/files/{wheel_name}":
                    body, kind = wheel, "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[_Index]:
    served = _Index(tmp_path)
    yield served
    served.server.shutdown()
    served.server.server_close()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This machine's environment minus any index/CA settings, so only the test's apply."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "SSL_CERT", "REQUESTS_CA", "CURL_CA"))}
    env.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1", UV_CACHE_DIR=str(tmp_path / "uv-cache"),
               UV_HTTP_RETRIES="0", UV_PYTHON_DOWNLOADS="never")
    env.update(extra)
    return env


def _venv_with_uv(tmp_path: Path) -> Path:
    """A venv that already holds the pinned uv (linked from ours): the run starts at the sync."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "bin" / "uv").symlink_to(Path(sys.executable).parent / "uv")
    return venv


def _run(venv: Path, lock: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BOOTSTRAP), "--venv", str(venv), "--lock", str(lock),
                           "--no-editable"], capture_output=True, text=True, env=env, timeout=120)


def test_untrusted_proxy_certificate_names_the_step_and_how_to_trust_the_ca(
        tmp_path: Path, index: _Index) -> None:
    lock = tmp_path / "req.lock"
    lock.write_text("tinypkg==1.0\n")
    venv = _venv_with_uv(tmp_path)
    done = _run(venv, lock, _env(tmp_path, UV_DEFAULT_INDEX=index.url))
    assert done.returncode == 1
    assert f"bootstrap FAILED at step 1/1: install the pinned packages of {lock} with uv" in done.stderr
    assert "UnknownIssuer" in done.stderr or "certificate" in done.stderr  # uv's own words, shown
    assert "It looks like a TLS certificate problem" in done.stderr
    assert "update-ca-certificates" in done.stderr and "SSL_CERT_FILE" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (venv / ".installed").exists()


def test_proxy_ca_trusted_by_the_machine_is_trusted_by_the_bootstrap(
        tmp_path: Path, index: _Index) -> None:
    lock = tmp_path / "req.lock"
    lock.write_text("tinypkg==1.0\n")
    venv = _venv_with_uv(tmp_path)
    done = _run(venv, lock, _env(tmp_path, UV_DEFAULT_INDEX=index.url, SSL_CERT_FILE=str(index.ca)))
    assert done.returncode == 0, done.stderr
    assert any(path.startswith("/files/tinypkg-1.0") for path in index.paths)
    value = subprocess.run([str(venv / "bin" / "python"), "-c", "import tinypkg; print(tinypkg.VALUE)"],
                           capture_output=True, text=True, check=True).stdout
    assert value.strip() == "42"
    again = _run(venv, lock, _env(tmp_path, UV_DEFAULT_INDEX=index.url, SSL_CERT_FILE=str(index.ca)))
    assert again.returncode == 0 and again.stderr == ""  # stamp matches: nothing to do


def test_unreachable_index_names_the_pip_step_and_the_proxy_settings(tmp_path: Path) -> None:
    closed = _closed_port()
    done = subprocess.run(
        [sys.executable, str(BOOTSTRAP), "--venv", str(tmp_path / "venv"), "--no-editable"],
        capture_output=True, text=True, timeout=180,
        env=_env(tmp_path, PIP_INDEX_URL=f"http://127.0.0.1:{closed}/simple", PIP_RETRIES="0",
                 PIP_TIMEOUT="5", PIP_NO_CACHE_DIR="1"))
    assert done.returncode == 1
    assert "bootstrap FAILED at step 2/3: install uv 0.13.8 with pip" in done.stderr
    assert "It looks like a network or package-index problem" in done.stderr
    assert "HTTPS_PROXY" in done.stderr and "PIP_CERT" in done.stderr
    assert "Traceback" not in done.stderr


def test_too_old_python_is_refused_with_the_fix() -> None:
    with pytest.raises(BootstrapError, match=r"Python 3\.10 or newer is required; /usr/bin/py "
                                             r"is 3\.9\.18\. Run make with PYTHON="):
        check_python((3, 9, 18), "/usr/bin/py")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
