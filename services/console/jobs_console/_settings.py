"""The console's configuration, from the environment: where it listens (CONSOLE_HOST,
CONSOLE_PORT, HTTPS with CONSOLE_TLS_CERT_FILE/KEY_FILE) and where the API is (the SDK's
JOBS_API_ADDRESS and JOBS_API_TLS_*; each user's token comes from the login form)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace

from jobs_client import Connection

__all__ = ["ConsoleSettings", "InsecureConsoleError"]


class InsecureConsoleError(ValueError):
    """Production settings that would send tokens in clear over a network."""


@dataclass(frozen=True)
class ConsoleSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert_file: str = ""
    tls_key_file: str = ""
    environment: str = "production"
    allow_insecure: bool = False
    api: Connection = field(default_factory=Connection)

    @classmethod
    def from_env(cls) -> ConsoleSettings:
        port_text = os.environ.get("CONSOLE_PORT", "8080")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"CONSOLE_PORT must be a port number (0-65535), not {port_text!r}")
        return cls(
            host=os.environ.get("CONSOLE_HOST", "127.0.0.1"),
            port=int(port_text),
            tls_cert_file=os.environ.get("CONSOLE_TLS_CERT_FILE", ""),
            tls_key_file=os.environ.get("CONSOLE_TLS_KEY_FILE", ""),
            environment=os.environ.get("ENVIRONMENT", "production"),
            allow_insecure=os.environ.get("ALLOW_INSECURE", "").lower() in ("1", "true", "yes"),
            api=replace(Connection.from_env(), token=None),  # each user brings their own
        )

    @property
    def https(self) -> bool:
        return bool(self.tls_cert_file)

    def check(self) -> None:
        """Refuses what would be unsafe: half a TLS pair, and in production plain HTTP on an
        address other machines reach (tokens would cross the network in clear)."""
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("HTTPS needs both CONSOLE_TLS_CERT_FILE and CONSOLE_TLS_KEY_FILE")
        if self.environment == "production" and not self.https and not self.allow_insecure and not _loopback(self.host):
            raise InsecureConsoleError(
                f"the console would serve plain HTTP on {self.host}: set CONSOLE_TLS_CERT_FILE and "
                "CONSOLE_TLS_KEY_FILE, listen on 127.0.0.1, or set ALLOW_INSECURE=true (e.g. behind a TLS proxy)"
            )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
