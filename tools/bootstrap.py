"""Build a virtualenv from a lock file with nothing but Python 3.10+ (used by make and the matrix).

Steps: create the venv (stdlib ``venv``), install the pinned uv with the venv's pip, ``uv pip sync``
the lock, install this project editable. uv is told to trust the operating system's certificate
store (``--system-certs``), so a TLS-inspecting company proxy whose CA is installed there works
as it does for pip and curl. When a step fails, the last lines of the tool's output are shown
with the step's name and what to check, instead of a bare traceback. Re-running is cheap: a stamp
records what the venv was built from and nothing is done while it matches.

Stdlib only and Python 3.10 syntax: it runs on the user's interpreter before any venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UV_VERSION = "0.13.8"
ROOT = Path(__file__).resolve().parent.parent
STAMP = ".installed"

NETWORK_HINT = (
    "Check that this machine reaches PyPI (pypi.org and files.pythonhosted.org):\n"
    "  - behind a proxy, export HTTPS_PROXY=http://proxy:port (and NO_PROXY for local hosts);\n"
    "  - behind a TLS-inspecting proxy, its CA certificate must be trusted: {ca}\n"
    "  - to use a package mirror instead of PyPI: {mirror}"
)
PIP_CA = ("pip reads it from PIP_CERT=/path/to/ca.pem or `pip config set global.cert "
          "/path/to/ca.pem` (pip before 24.2 does not read the system store)")
UV_CA = ("uv reads the system certificate store (it runs with --system-certs): install the CA "
         "there (Debian/Ubuntu: copy it to /usr/local/share/ca-certificates/ and run "
         "update-ca-certificates) or export SSL_CERT_FILE=/path/to/ca-bundle.pem")
TLS_WORDS = ("certificate", "UnknownIssuer", "CERTIFICATE_VERIFY_FAILED", "SSL", "tls")


@dataclass(frozen=True)
class Step:
    """One command of the set-up, with what to tell the user when it fails."""

    title: str
    argv: list[str]
    hint: str


class BootstrapError(Exception):
    """A set-up step failed; the message names the step, shows the tool's output and what to check."""


def check_python(version: tuple[int, ...], executable: str) -> None:
    if tuple(version[:2]) < (3, 10):
        raise BootstrapError(
            f"Python 3.10 or newer is required; {executable} is "
            f"{'.'.join(map(str, version[:3]))}. Run make with PYTHON=/path/to/python3.10+.")


def fingerprint(python: str, lock: Path, editable: bool) -> str:
    """What the venv is built from: a change to any of it rebuilds."""
    digest = hashlib.sha256(f"{python}\n{UV_VERSION}\n{editable}\n".encode())
    digest.update(lock.read_bytes())
    if editable:
        digest.update((ROOT / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def steps(venv: Path, python: str, lock: Path, editable: bool) -> list[Step]:
    vpython = str(venv / "bin" / "python")
    uv = str(venv / "bin" / "uv")
    uv_hint = NETWORK_HINT.format(ca=UV_CA, mirror="export UV_DEFAULT_INDEX=https://mirror/simple")
    plan: list[Step] = []
    if not (venv / "bin" / "python").exists():
        plan.append(Step(
            f"create the virtualenv {venv.name} with {python}", [python, "-m", "venv", str(venv)],
            "The venv module could not create it. On Debian/Ubuntu install the python3-venv "
            "package (apt-get install python3-venv); elsewhere use a Python from python.org."))
    if _version_of(uv) != UV_VERSION:
        plan.append(Step(
            f"install uv {UV_VERSION} with pip",
            [vpython, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"uv=={UV_VERSION}"],
            NETWORK_HINT.format(ca=PIP_CA, mirror="export PIP_INDEX_URL=https://mirror/simple")))
    plan.append(Step(
        f"install the pinned packages of {_shown(lock)} with uv",
        [uv, "pip", "sync", "--quiet", "--system-certs", "--python", vpython, str(lock)], uv_hint))
    if editable:
        plan.append(Step(
            "install this project (editable) with uv",
            [uv, "pip", "install", "--quiet", "--system-certs", "--python", vpython, "--no-deps",
             "-e", str(ROOT)], uv_hint))
    return plan


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _version_of(uv: str) -> str | None:
    try:
        out = subprocess.run([uv, "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    parts = out.split()
    return parts[1] if len(parts) > 1 else None


def run_step(step: Step, number: int, total: int) -> None:
    print(f"bootstrap: [{number}/{total}] {step.title}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(step.argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BootstrapError(_report(step, number, total, str(exc))) from exc
    if done.returncode != 0:
        raise BootstrapError(_report(step, number, total, done.stdout + done.stderr))


def _report(step: Step, number: int, total: int, output: str) -> str:
    tail = "\n".join("    " + line for line in output.strip().splitlines()[-25:])
    tls = any(word in output for word in TLS_WORDS)
    cause = ("It looks like a TLS certificate problem (a proxy or mirror whose CA is not trusted)."
             if tls else "It looks like a network or package-index problem.")
    return (f"\nbootstrap FAILED at step {number}/{total}: {step.title}\n"
            f"  command: {' '.join(step.argv)}\n  its output (last lines):\n{tail}\n\n"
            f"{cause}\n{step.hint}\n")


def bootstrap(venv: Path, python: str, lock: Path, editable: bool) -> bool:
    """Bring ``venv`` to ``lock``; False when it was already up to date."""
    stamp = venv / STAMP
    wanted = fingerprint(python, lock, editable)
    if stamp.exists() and stamp.read_text() == wanted:
        stamp.touch()  # newer than the lock again, so make stops asking
        return False
    plan = steps(venv, python, lock, editable)
    for number, step in enumerate(plan, 1):
        run_step(step, number, len(plan))
    stamp.write_text(wanted)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements" / "dev.lock")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter the venv is created with (default: this one)")
    parser.add_argument("--no-editable", dest="editable", action="store_false",
                        help="do not install this project into the venv")
    args = parser.parse_args(argv)
    try:
        if args.python == sys.executable:
            check_python(sys.version_info[:3], sys.executable)
        bootstrap(args.venv.resolve(), args.python, args.lock.resolve(), args.editable)
    except BootstrapError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
