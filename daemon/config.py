"""The daemon's settings, validated once, before anything starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from rinha.http.listen import Address, AddressError, parse_address
from rinha.http.server import Limits
from rinha.policy import POLICIES

ROLES = ("api", "dispatch", "health")


class ConfigError(ValueError):
    """A setting that cannot work; the message names it and says what is expected."""


@dataclass(frozen=True)
class ServeConfig:
    listen: Address = field(default_factory=lambda: parse_address("0.0.0.0:9999"))
    db: str = "./rinha.db"
    default_url: str = "http://localhost:8001"
    fallback_url: str = "http://localhost:8002"
    roles: frozenset[str] = frozenset(ROLES)
    policy: str = "fee-first"
    concurrency: int = 64  # attempts in flight per processor
    timeout: float = 10.0  # seconds to wait for a processor's answer before it is ambiguous
    lease_seconds: float = 5.0  # a claimed payment is adopted by another instance after this
    deadline: float = 10.0  # the deadline policy's wait before the fallback may be used
    max_age: float = 0.0  # dead-letter payments older than this (0: never)
    health_interval: float = 5.0  # seconds between two health calls to one processor
    limits: Limits = Limits()
    control: str | None = None  # control socket path; None: default_control_path(db); "": no control plane
    attempts_retention: float = 7 * 86400.0  # seconds an attempt is kept in the store (0: forever)
    grace_seconds: float = 5.0  # on SIGTERM/SIGINT: how long in-flight attempts may take to finish


#: A unix socket path holds at most this many bytes on Linux (``sun_path`` is 108 with the NUL).
MAX_SOCKET_PATH = 107


def default_control_path(db: str) -> str:
    """The control socket of the daemon using database ``db``: next to the file; for a database
    URL (no file to sit next to), ``$TMPDIR/rinha-<hash of the URL, password left out>.control.sock``."""
    from rinha.store import display, is_url

    if is_url(db):
        import hashlib
        import tempfile

        digest = hashlib.sha256(display(db.strip()).encode()).hexdigest()[:12]
        return os.path.join(tempfile.gettempdir(), f"rinha-{digest}.control.sock")
    return db + ".control.sock"


def check_control(control: str | None, db: str) -> str:
    """The control socket path to use ("" for none), or ConfigError."""
    path = default_control_path(db) if control is None else control.strip()
    if path and len(os.fsencode(path)) > MAX_SOCKET_PATH:
        origin = "derived from --db" if control is None else "--control"
        raise ConfigError(f"control socket path {path!r} ({origin}) is {len(os.fsencode(path))} bytes; a unix socket "
                          f"path holds at most {MAX_SOCKET_PATH}: pass a shorter --control PATH, or --no-control")
    return path


def parse_roles(text: str) -> frozenset[str]:
    roles = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = roles - set(ROLES)
    if unknown or not roles:
        raise ConfigError(f"--roles {text!r}: expected a comma-separated subset of {','.join(ROLES)}")
    return roles


def check_url(option: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"{option} {url!r}: expected http://host[:port]")
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"{option} {url!r}: invalid port") from None
    return url.rstrip("/")


def make_config(listen: str, db: str, default_url: str, fallback_url: str, roles: str, policy: str = "fee-first",
                concurrency: int = 64, timeout: float = 10.0, lease_seconds: float = 5.0, deadline: float = 10.0,
                max_age: float = 0.0, health_interval: float = 5.0, header_timeout: float = 10.0,
                idle_timeout: float = 75.0, control: str | None = None,
                attempts_retention: float = 7 * 86400.0, grace_seconds: float = 5.0) -> ServeConfig:
    try:
        address = parse_address(listen)
    except AddressError as exc:
        raise ConfigError(f"--listen {exc}") from None
    if policy not in POLICIES:
        raise ConfigError(f"--policy {policy!r}: choose one of {', '.join(POLICIES)}")
    if not 1 <= concurrency <= 1000:
        raise ConfigError(f"--concurrency {concurrency}: expected 1-1000")
    if not 0.05 <= timeout <= 600:
        raise ConfigError(f"--timeout {timeout}: expected 0.05-600 seconds")
    if not 0.5 <= lease_seconds <= 3600:
        raise ConfigError(f"--lease-seconds {lease_seconds}: expected 0.5-3600 seconds")
    if not 0 <= deadline <= 86400:
        raise ConfigError(f"--deadline {deadline}: expected 0-86400 seconds")
    if max_age != 0 and not 1 <= max_age <= 30 * 86400:
        raise ConfigError(f"--max-age {max_age}: expected 0 (off) or 1 s to 30 days")
    if not 1 <= health_interval <= 3600:
        raise ConfigError(f"--health-interval {health_interval}: expected 1-3600 seconds (the processors allow one call per 5 s)")
    if not 0.1 <= header_timeout <= 600:
        raise ConfigError(f"--header-timeout {header_timeout}: expected 0.1-600 seconds")
    if not 0.1 <= idle_timeout <= 3600:
        raise ConfigError(f"--idle-timeout {idle_timeout}: expected 0.1-3600 seconds")
    from rinha.store import EngineMissing, check_db

    try:
        check_db(db)
    except (ValueError, EngineMissing) as exc:
        raise ConfigError(f"--db {exc}") from None
    if attempts_retention != 0 and not 1 <= attempts_retention <= 10 * 365 * 86400:
        raise ConfigError(f"--attempts-retention {attempts_retention}: expected 0 (keep forever) or 1 s to 10 years")
    if not 0 <= grace_seconds <= 600:
        raise ConfigError(f"--grace-seconds {grace_seconds}: expected 0-600 seconds")
    control = check_control(control, db)
    return ServeConfig(
        control=control, attempts_retention=attempts_retention, grace_seconds=grace_seconds,
        listen=address, db=db, default_url=check_url("--default-url", default_url),
        fallback_url=check_url("--fallback-url", fallback_url), roles=parse_roles(roles), policy=policy,
        concurrency=concurrency, timeout=timeout, lease_seconds=lease_seconds, deadline=deadline, max_age=max_age,
        health_interval=health_interval,
        limits=Limits(header_timeout=header_timeout, idle_timeout=idle_timeout),
    )
