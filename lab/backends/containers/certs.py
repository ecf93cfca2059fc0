"""Certificates for engines that take only clients with a certificate (dockerd --tlsverify).

A small CA of the cluster's own, a server certificate per host (its address and name as subject
alternative names, for serverAuth) and one client certificate (clientAuth) the lab presents to
every host. Made with the `openssl` command (argv lists, never a shell), so the same commands work
for real hosts: README, "Multi-host labs". Keys are EC P-256, readable by their owner only.

The folder holds: ca.pem, ca-key.pem (kept: a host added later gets its certificate from it),
HOST-cert.pem and HOST-key.pem per host, cert.pem and key.pem (the client's), and a MARK file
that says the lab made the folder (so `lab cluster down` removes this folder and nothing else).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab.errors import EnvironmentProblem

MARK = "made-by-lab-cluster"
DAYS = "825"
CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class ServerFiles:
    ca: Path
    cert: Path
    key: Path


def ensure_ca(folder: Path, name: str) -> None:
    """The cluster's CA in `folder` (made once; an existing one is kept)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    (folder / MARK).write_text(f"lab cluster {name}: `lab cluster down` removes this folder\n")
    if (folder / "ca.pem").exists() and (folder / "ca-key.pem").exists():
        return
    _openssl(["req", "-x509", *CURVE, "-keyout", str(folder / "ca-key.pem"), "-out", str(folder / "ca.pem"),
              "-days", DAYS, "-subj", f"/CN=lab cluster {name} CA",
              "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    os.chmod(folder / "ca-key.pem", 0o600)


def server(folder: Path, host: str, address: str) -> ServerFiles:
    """A host's certificate for `address` (remade when the address is not the one it names)."""
    cert, key = folder / f"{host}-cert.pem", folder / f"{host}-key.pem"
    names = f"IP:{address},DNS:{host}"
    if not (cert.exists() and key.exists() and f"IP Address:{address}" in _text(cert)):
        _issue(folder, cert, key, f"/CN={host}", f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    return ServerFiles(folder / "ca.pem", cert, key)


def client(folder: Path) -> ServerFiles:
    """The lab's client certificate (one for every host)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not (cert.exists() and key.exists()):
        _issue(folder, cert, key, "/CN=lab", "extendedKeyUsage=clientAuth\n")
    return ServerFiles(folder / "ca.pem", cert, key)


def _issue(folder: Path, cert: Path, key: Path, subject: str, extensions: str) -> None:
    with tempfile.TemporaryDirectory(prefix="lab-certs-") as work:
        csr, ext = Path(work) / "req.csr", Path(work) / "ext.cnf"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" + extensions)
        _openssl(["req", "-new", *CURVE, "-keyout", str(key), "-out", str(csr), "-subj", subject])
        _openssl(["x509", "-req", "-in", str(csr), "-CA", str(folder / "ca.pem"), "-CAkey", str(folder / "ca-key.pem"),
                  "-set_serial", "0x" + secrets.token_hex(16), "-days", DAYS, "-extfile", str(ext), "-out", str(cert)])
    os.chmod(key, 0o600)


def _text(cert: Path) -> str:
    return _openssl(["x509", "-in", str(cert), "-noout", "-text"])


def _openssl(args: list[str]) -> str:
    try:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise EnvironmentProblem("--tls needs the openssl command (Debian: apt-get install openssl)") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise EnvironmentProblem(f"openssl {args[0]}: {lines[-1] if lines else 'failed'}")
    return done.stdout
