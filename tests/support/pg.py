"""A real PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` on a temporary data directory.

The server listens on a free TCP port on 127.0.0.1 (and a unix socket in its directory), trusts
every local connection, and is tuned for tests: ``fsync = off`` (nothing here survives a power
loss anyway; a crash of a *daemon* loses nothing either way, its commits are in the server).
Each test gets a fresh database (``CREATE DATABASE ... TEMPLATE template0``, a few ms).

``initdb`` refuses to run as root: as root, the server's commands run as the ``postgres`` user
(``runuser``), on a directory that user owns. The binaries are looked up on ``$PATH``, then in
``/usr/lib/postgresql/*/bin`` (Debian's layout; ``.ci/run`` installs the package when missing).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile

from tests.support.procs import free_port


class PostgresMissing(RuntimeError):
    pass


def find_bindir() -> str:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0)
    if not candidates:
        raise PostgresMissing("PostgreSQL's initdb was not found on PATH nor in /usr/lib/postgresql/*/bin "
                              "(apt-get install postgresql; .ci/run does)")
    return os.path.dirname(candidates[-1])


class PostgresServer:
    """One throw-away server; :meth:`create_database` returns the URL of a new, empty database."""

    #: Server settings for tests (``settings`` given to the constructor override them).
    TEST_SETTINGS = {"fsync": "off", "full_page_writes": "off", "max_connections": "300", "shared_buffers": "32MB",
                     "deadlock_timeout": "200ms"}

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = {**self.TEST_SETTINGS, **(settings or {})}
        self.bindir = find_bindir()
        self.base = tempfile.mkdtemp(prefix="rinha-pg-")
        self.datadir = os.path.join(self.base, "data")
        self.port = free_port()
        self._names = itertools.count(1)
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as_user, os.path.join(self.bindir, args[0]), *args[1:]],
                                capture_output=True, text=True, timeout=120, cwd=self.base)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                               f"{self.log_text()}")

    def start(self) -> "PostgresServer":
        self._run("initdb", "-D", self.datadir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
                  "--no-sync")
        options = " ".join([f"-p {self.port}", f"-k {self.base}", "-c listen_addresses=127.0.0.1",
                            *(f"-c {name}={value}" for name, value in self.settings.items())])
        self._run("pg_ctl", "-D", self.datadir, "-l", os.path.join(self.base, "server.log"), "-o", options,
                  "-w", "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"rinha_test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def log_text(self) -> str:
        try:
            with open(os.path.join(self.base, "server.log"), errors="replace") as log:
                return log.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.base, ignore_errors=True)
