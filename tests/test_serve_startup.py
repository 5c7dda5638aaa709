"""`rinha serve` refusing to start: one line on stderr, exit 1, and nothing of anyone else's taken.

A daemon that cannot open its store or its address says which and why, before it starts any
work; a unix socket another process answers on is never replaced (only a stale one is).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.procs import Service, free_port, rinha_command


@pytest.fixture
def short_dir():
    # unix socket paths are limited to 107 bytes: pytest's tmp_path can be too deep
    path = Path(tempfile.mkdtemp(prefix="rss-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def refused(*args: str) -> str:
    """Run `rinha serve ARGS` (api only, so no processor is needed); its one-line error."""
    done = subprocess.run(rinha_command("serve", "--roles", "api", "--no-control", *args),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == done.stderr.strip().splitlines()[-1], done.stderr
    return errors[0]


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path):
    not_a_database = tmp_path / "notes.db"
    not_a_database.write_text("not sqlite\n")
    message = refused("--listen", f"127.0.0.1:{free_port()}", "--db", str(not_a_database))
    assert f"cannot open the store {not_a_database}" in message and "not a database" in message
    assert not_a_database.read_text() == "not sqlite\n"

    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    assert "newer than this rinha knows" in refused("--listen", f"127.0.0.1:{free_port()}", "--db", str(newer))

    assert "cannot open the store" in refused("--listen", f"127.0.0.1:{free_port()}", "--db", str(tmp_path))

    # PostgreSQL's messages span lines: still one
    unreachable = refused("--listen", f"127.0.0.1:{free_port()}", "--db", f"postgresql://u@127.0.0.1:{free_port()}/x")
    assert unreachable.startswith("error: cannot open the store postgresql://u@127.0.0.1:") and "refused" in unreachable


def test_an_address_that_cannot_be_listened_on_is_one_line(tmp_path, short_dir):
    db = str(tmp_path / "rinha.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = refused("--listen", f"127.0.0.1:{port}", "--db", db)
    assert message == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"

    assert "cannot listen on nohost.invalid:9" in refused("--listen", "nohost.invalid:9", "--db", db)
    assert refused("--listen", "a..b:9", "--db", db) == "error: cannot listen on a..b:9: not a valid host name"

    regular = short_dir / "file.sock"
    regular.write_text("keep me\n")
    message = refused("--listen", f"unix:{regular}", "--db", db)
    assert "exists and is not a socket" in message
    assert regular.read_text() == "keep me\n"

    assert "No such file or directory" in refused("--listen", f"unix:{short_dir}/missing/api.sock", "--db", db)


def test_a_live_unix_socket_is_never_taken_over_and_a_stale_one_is(tmp_path, short_dir):
    path = str(short_dir / "api.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # bound, never listening: what a daemon killed with -9 leaves
    stale.close()
    first = Service(rinha_command("serve", "--roles", "api", "--no-control", "--listen", f"unix:{path}",
                                  "--db", str(tmp_path / "rinha.db")),
                    ready_unix=path, ready_url="http://api/payments-summary", name="serve").start()
    try:
        inode = os.stat(path).st_ino
        message = refused("--listen", f"unix:{path}", "--db", str(tmp_path / "other.db"))
        assert message == f"error: cannot listen on unix:{path}: in use by another running process"
        assert os.stat(path).st_ino == inode
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=10) as client:
            body = {"correlationId": str(uuid.uuid4()), "amount": 19.90}
            assert client.post("http://api/payments", json=body).status_code == 202
    finally:
        first.stop()
