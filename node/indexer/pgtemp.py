"""A throwaway PostgreSQL cluster (initdb + pg_ctl on a free port) for tests and benchmarks.

initdb refuses to run as root, so as root the cluster runs as the `postgres` system user that
Debian's package creates (TOOLCHAIN-NOTES)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from sqlalchemy import create_engine

from node.db import normalize_url
from node.devnet import free_port


def pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class TempPostgres:
    def __init__(self) -> None:
        initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
            )
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.base = Path(tempfile.mkdtemp(prefix="rxledger-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, user="postgres", group="postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def start(self) -> Self:
        subprocess.run(
            [*self.as_user, self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *self.as_user,
                self.pg_ctl,
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.base / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        return self

    def database_url(self, name: str) -> str:
        """Create database `name` and return its URL."""
        engine = create_engine(normalize_url(f"{self.server_url}/postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return f"{self.server_url}/{name}"

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)
