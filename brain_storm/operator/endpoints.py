"""Resolve a binding's database and queue URLs, and say what is wrong with them.

Pure functions over the binding's spec and the Secrets it references.  A
problem is raised as :class:`ConfigProblem`, whose ``reason`` becomes a
condition's reason and whose ``message`` is safe to show: it names Secrets,
keys and schemes, never a URL with its password (see
:func:`brain_storm.urls.mask_url`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from brain_storm.databases import known_schemes
from brain_storm.operator.manifests import ENDPOINTS, value_hash
from brain_storm.urls import QUEUE_SCHEMES, mask_url, url_scheme

DEFAULT_PORTS = {
    "postgresql": 5432, "postgres": 5432, "postgresql+psycopg": 5432,
    "mongodb": 27017, "amqp": 5672, "rabbitmq": 5672,
    "amqps": 5671, "rabbitmqs": 5671,
}
UNPROBED_SCHEMES = {
    "sqlite": "a SQLite file lives in the saver's pod, not on the network",
    "sqlite3": "a SQLite file lives in the saver's pod, not on the network",
    "mongodb+srv": "mongodb+srv:// hosts are found through DNS SRV records",
}

SecretLookup = Callable[[str], Mapping[str, Any] | None]
"""Returns a Secret's body by name (in the binding's namespace), or None."""


class ConfigProblem(Exception):
    """A binding that cannot run as specified until somebody changes something."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Resolved:
    """The URLs a binding's savers will use, and what the operator may show."""

    urls: dict[str, str]
    secret_hashes: dict[str, str]

    @property
    def database_scheme(self) -> str:
        return url_scheme(self.urls["database"])

    def target(self, endpoint: str) -> tuple[str, int] | str:
        """``(host, port)`` to probe, or the reason there is none."""
        return probe_target(self.urls[endpoint])


def resolve(spec: Mapping[str, Any], lookup: SecretLookup) -> Resolved:
    """Read each URL from the spec or its Secret, and check its scheme."""
    urls, hashes = {}, {}
    for endpoint in ENDPOINTS:
        source = spec.get(endpoint) or {}
        ref = (source.get("urlFrom") or {}).get("secretKeyRef")
        if ref:
            urls[endpoint] = _secret_value(endpoint, ref, lookup)
            hashes[endpoint] = value_hash(urls[endpoint])
        else:
            urls[endpoint] = str(source.get("url") or "")
    _check_scheme("database", urls["database"], known_schemes())
    _check_scheme("queue", urls["queue"], list(QUEUE_SCHEMES))
    return Resolved(urls=urls, secret_hashes=hashes)


def _secret_value(endpoint: str, ref: Mapping[str, str], lookup: SecretLookup) -> str:
    secret = lookup(ref["name"])
    where = f"spec.{endpoint}.urlFrom.secretKeyRef"
    if secret is None:
        raise ConfigProblem(
            "SecretNotFound", f"{where}: Secret {ref['name']!r} does not exist")
    encoded = (secret.get("data") or {}).get(ref["key"])
    plain = (secret.get("stringData") or {}).get(ref["key"])
    if encoded is None and plain is None:
        raise ConfigProblem(
            "SecretKeyNotFound",
            f"{where}: Secret {ref['name']!r} has no key {ref['key']!r}")
    if plain is not None:
        return str(plain).strip()
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        raise ConfigProblem(
            "SecretKeyInvalid",
            f"{where}: key {ref['key']!r} of Secret {ref['name']!r} is not UTF-8 text",
        ) from None


def _check_scheme(endpoint: str, url: str, known: list[str]) -> None:
    scheme = url_scheme(url)
    if scheme not in known:
        shown = f"{scheme}://" if scheme else f"{mask_url(url)!r} (no scheme)"
        raise ConfigProblem(
            "UnsupportedScheme",
            f"spec.{endpoint}: {shown} is not supported; use one of "
            + ", ".join(f"{name}://" for name in known),
        )


def probe_target(url: str) -> tuple[str, int] | str:
    """``(host, port)`` of the first host in ``url``, or why it is not probed."""
    scheme = url_scheme(url)
    if scheme in UNPROBED_SCHEMES:
        return UNPROBED_SCHEMES[scheme]
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    # MongoDB URLs may list several hosts; the first one is enough to tell
    # whether the network path is open.
    first = netloc.split(",")[0]
    try:
        parts = urlsplit(f"//{first}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return "the URL's host and port cannot be parsed"
    if not host:
        return "the URL names no host"
    port = port or DEFAULT_PORTS.get(scheme)
    if port is None:
        return f"no default port is known for {scheme}://"
    return host, port
