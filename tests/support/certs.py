"""Throwaway PKI for the TLS tests, made with the openssl command line: a CA, a server
certificate for localhost/127.0.0.1, a client certificate, and a client from another CA."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate another CA signed
    stranger_key: Path


def make_pki(directory: Path) -> Pki:
    ca, ca_key = _authority(directory, "ca")
    other, other_key = _authority(directory, "other-ca")
    server = _issue(
        directory, "server", ca, ca_key, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    )
    client = _issue(directory, "client", ca, ca_key, "extendedKeyUsage=clientAuth")
    stranger = _issue(directory, "stranger", other, other_key, "extendedKeyUsage=clientAuth")
    return Pki(ca, *server, *client, *stranger)


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _authority(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", *_KEY, "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN=job-scheduler test {name}"
    )
    return cert, key


def _issue(directory: Path, name: str, ca: Path, ca_key: Path, extensions: str) -> tuple[Path, Path]:
    cert, key, request = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    extfile = directory / f"{name}.ext"
    extfile.write_text(f"basicConstraints=CA:FALSE\n{extensions}\n")
    _openssl("req", *_KEY, "-keyout", key, "-out", request, "-subj", f"/CN={name}")
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", extfile,
    )  # fmt: skip
    return cert, key
