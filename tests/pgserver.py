"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary folder, listening
on 127.0.0.1 only (no Unix socket), on a free port, with a random password.

One mechanism for both users: the ``postgres_url`` fixture (``tests/test_optimize_storage.py``)
starts one when the server binaries exist and ``NTJAX_TEST_POSTGRES_URL`` is not set, and
``.ci/run`` runs this file as a script::

    folder=$(python tests/pgserver.py start)   # prints the folder; its url file holds the URL
    python tests/pgserver.py stop "$folder"

When run as root, the server runs as the unprivileged ``postgres`` user (``initdb`` refuses
root), through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

URL_VARIABLE = "NTJAX_TEST_POSTGRES_URL"
USER = "ntjax"


def binaries() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _runner() -> tuple[list[str], str | None]:
    """The command prefix that runs a program as the server's user, and that user's name."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError as error:
        raise RuntimeError(
            "running as root without a 'postgres' user: initdb refuses root "
            "(create the user, e.g. `useradd --system postgres`)."
        ) from error
    return ["runuser", "-u", "postgres", "--"], "postgres"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(folder: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Starts a server in a new folder (or ``folder``); returns the folder and the URL
    ``postgresql+psycopg://ntjax:PASSWORD@127.0.0.1:PORT/postgres`` (also in ``folder/url``).

    Raises:
      RuntimeError: no PostgreSQL binaries, or the server did not start (its log attached).
    """
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found.")
    prefix, owner = _runner()
    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="ntjax-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(16)
    (root / "password").write_text(password)
    if owner is not None:
        shutil.chown(root, owner)
        shutil.chown(root / "password", owner)
    data, log = root / "data", root / "server.log"
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={root / 'password'}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-instructions",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    started = subprocess.run(
        [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"]
        + ["-o", options, "start"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        text = log.read_text() if log.exists() else started.stderr
        raise RuntimeError(f"PostgreSQL did not start:\n{text[-2000:]}")
    url = f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{port}/postgres"
    (root / "url").write_text(url)
    return root, url


def stop(folder: str | os.PathLike) -> None:
    """Stops the server of ``folder`` (immediate shutdown) and deletes the folder."""
    root = Path(folder)
    bin_dir = binaries()
    if bin_dir is not None and (root / "data" / "postmaster.pid").exists():
        prefix, _ = _runner()
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate"]
            + ["-w", "stop"],
            capture_output=True,
        )
    shutil.rmtree(root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Creates the empty database ``name`` on the server of ``url``; returns its URL."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return str(sqlalchemy.engine.make_url(url).set(database=name).render_as_string(False))


if __name__ == "__main__":
    if sys.argv[1:2] == ["start"]:
        print(start(sys.argv[2] if len(sys.argv) > 2 else None)[0])
    elif sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        stop(sys.argv[2])
    else:
        sys.exit("usage: pgserver.py start [FOLDER] | stop FOLDER")
