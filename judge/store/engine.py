"""Opening the database and bringing its schema up to date.

`open_engine` makes a SQLAlchemy engine that behaves the same on SQLite and PostgreSQL: on SQLite it
creates the file's directory, waits up to 30 s for locks, turns on foreign keys and WAL, and starts write
transactions with ``BEGIN IMMEDIATE`` so writers queue instead of failing half-way. `migrate` runs the
Alembic migrations shipped in ``judge/store/migrations`` (no ``alembic.ini``: the config is built here).

Database faults surface as `judge.errors.StoreError`, never as a driver traceback: a database that cannot be
reached is retried briefly when opened, then reported (``StoreError``); a SQLite lock held beyond the busy
timeout is a ``ConcurrentWriteError``. Every store built on `open_engine` gets this.
"""

from __future__ import annotations

import importlib.util
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError, ProgrammingError
from sqlalchemy.pool import StaticPool

from judge.errors import ConcurrentWriteError, SchemaVersionError, StoreError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["CONNECT_ATTEMPTS", "CONNECT_WAIT_S", "MIGRATIONS_DIR", "WRITE_OPTION", "alembic_config",
           "known_revisions", "migrate", "newest_revision", "open_engine", "schema_revision"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Execution option marking a connection whose transaction will write (``BEGIN IMMEDIATE`` on SQLite).
WRITE_OPTION = "judge_write"

#: How often `migrate` tries to reach the database, and the wait between tries (a server restarting).
CONNECT_ATTEMPTS = 3
CONNECT_WAIT_S = 1.0

#: Key of the PostgreSQL advisory lock that serializes concurrent migrations.
_PG_MIGRATION_LOCK = 0x6A75646765  # "judge"


def open_engine(url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for ``url``, set up for the store.

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:////path/judge.db`` or ``postgresql+psycopg2://...``.
        create: make a SQLite file (and its folder) that does not exist yet; False raises `StoreError` for
            it instead, so a command that only reads never leaves an empty database at a mistyped path.
        **kwargs: passed on to `sqlalchemy.create_engine` (e.g. ``echo=True``).
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError("not a database URL (expected e.g. sqlite:////path/judge.db or "
                         "postgresql+psycopg2://user@host/db)") from None
    if parsed.get_backend_name() != "sqlite":
        if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
            # SQLAlchemy's default PostgreSQL driver is psycopg 3; the one judge installs is psycopg2.
            parsed = parsed.set(drivername="postgresql+psycopg2")
        kwargs.setdefault("pool_pre_ping", True)
        try:
            engine = create_engine(parsed, **kwargs)
        except (ImportError, NoSuchModuleError) as exc:
            raise StoreError(f"no database driver for {parsed.drivername}:// is installed "
                             f"({type(exc).__name__}: {exc})") from None
        _translate_errors(engine)
        return engine
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        if not create and not path.exists():
            raise StoreError(f"no database at {path}: create one with `judge init` or `judge rulebook load`, or "
                             "name the existing one (--db or JUDGE_DB_URL)")
        path.parent.mkdir(parents=True, exist_ok=True)
    in_memory = not database or database == ":memory:"
    connect_args = {"timeout": 30, **kwargs.pop("connect_args", {})}
    if in_memory:
        # One shared connection, or every checkout would see its own empty database.
        kwargs.setdefault("poolclass", StaticPool)
        connect_args.setdefault("check_same_thread", False)
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    _configure_sqlite(engine, in_memory=in_memory)
    _translate_errors(engine)
    return engine


#: SQLite's words for a file that is not (or no longer) a database.
_NOT_A_DATABASE = ("file is not a database", "database disk image is malformed")


def _translate_errors(engine: Engine) -> None:
    """Re-raise an unreachable database and a lock held too long as `StoreError`s (one clear line)."""
    where = engine.url.render_as_string(hide_password=True)

    @event.listens_for(engine, "handle_error")
    def _on_error(ctx: ExceptionContext) -> None:
        # Pre-ping failures must stay SQLAlchemy's: the pool reconnects on them.
        if ctx.is_pre_ping or not isinstance(ctx.sqlalchemy_exception, DatabaseError):
            return
        lines = str(ctx.original_exception).strip().splitlines()
        detail = lines[0][:200] if lines else type(ctx.original_exception).__name__
        if any(sign in detail.lower() for sign in _NOT_A_DATABASE):  # a SQLite file that is not a database
            raise StoreError(f"database {where} cannot be read as a database ({detail}); point --db / JUDGE_DB "
                             "at the judge database") from ctx.sqlalchemy_exception
        if not isinstance(ctx.sqlalchemy_exception, OperationalError):
            return
        if "database is locked" in detail.lower():
            raise ConcurrentWriteError(f"database {where} stayed locked by another connection beyond the busy "
                                       f"timeout ({detail})") from ctx.sqlalchemy_exception
        if ctx.connection is None or ctx.is_disconnect:  # connecting failed, or the connection was lost
            raise StoreError(f"cannot reach database {where}: {detail}") from ctx.sqlalchemy_exception


def _enable_wal(cursor: Any, *, attempts: int = 60, wait_s: float = 0.5) -> None:
    """Switch a SQLite file to WAL, waiting out another process doing the same.

    WAL is a property of the file, so a process that finds it already on does nothing. Switching needs an
    exclusive lock that SQLite does not wait for (the busy timeout does not apply): two processes opening a
    fresh database at once would otherwise fail with "database is locked".
    """
    for attempt in range(attempts):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(wait_s)


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so we can choose BEGIN vs BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            if not in_memory:
                # Readers never block the writer (and vice versa): iter_current can page during writes.
                _enable_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that later writes fails at once (no busy wait) if another process wrote
        # meanwhile; taking the write lock up front makes concurrent writers queue on the busy timeout.
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic `Config` pointing at the shipped migrations (and at ``engine``'s URL when given)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        # ConfigParser interpolates '%', which URL-encoded passwords contain.
        url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
        config.set_main_option("sqlalchemy.url", url)
    return config


def known_revisions() -> list[str]:
    """Every schema revision this version of `judge` knows, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def schema_revision(engine: Engine) -> tuple[str, ...]:
    """The Alembic revision(s) the database is stamped with (empty for a fresh database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_heads()


def migrate(engine: Engine) -> None:
    """Bring the database schema up to the newest revision.

    Safe when several processes open a fresh database at once: on SQLite the upgrade runs under the write
    lock, on PostgreSQL under an advisory lock, and elsewhere a lost race is detected and re-checked.

    Raises:
        SchemaVersionError: the database carries a revision these migrations do not know (written by a
            newer `judge`); nothing is modified.
        StoreError: the database cannot be reached (after `CONNECT_ATTEMPTS` tries on a server).
    """
    _wait_until_reachable(engine)
    if _is_newest(engine):
        return  # the common case, answered without loading Alembic
    from alembic.script import ScriptDirectory

    config = alembic_config(engine)
    known = known_revisions()
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        _upgrade(engine, config, known, head)
    except (OperationalError, ProgrammingError, ConcurrentWriteError):
        # Another process created the tables between our check and our DDL (dialects without a lock
        # above). If the schema is now current, that is success; otherwise the error is real.
        if schema_revision(engine) != (head,):
            raise


def _wait_until_reachable(engine: Engine) -> None:
    """Connect once, retrying a database server that cannot be reached (`CONNECT_ATTEMPTS`), then `StoreError`."""
    attempts = 1 if engine.dialect.name == "sqlite" else CONNECT_ATTEMPTS  # a file does not come back by waiting
    for attempt in range(1, attempts + 1):
        try:
            with engine.connect():
                return
        except ConcurrentWriteError:
            raise
        except StoreError as exc:
            if attempt >= attempts:
                raise StoreError(f"{exc} (after {attempt} attempt(s))") from exc
            log.warning("%s; retrying in %.1f s", exc, CONNECT_WAIT_S)
            time.sleep(CONNECT_WAIT_S)


def newest_revision() -> str:
    """The newest schema revision shipped, read from the migration file names without Alembic: each file is
    named after its revision id, ``NNNN_<name>.py``, numbered in order (a test checks both)."""
    return max(path.stem for path in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def _is_newest(engine: Engine) -> bool:
    """Whether the database is stamped with the newest revision alone (nothing to migrate, nothing unknown)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return found == [newest_revision()]


def _upgrade(engine: Engine, config: Config, known: list[str], head: str | None) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        found = MigrationContext.configure(conn).get_current_heads()
        unknown = [rev for rev in found if rev not in known]
        if unknown:
            raise SchemaVersionError(", ".join(found), known, engine.url.render_as_string(hide_password=True))
        if found == (head,):
            return
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def open_database(url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """`open_engine` for ``url``, migrated to the newest schema revision: ready for every store (``create``:
    as `open_engine`)."""
    engine = open_engine(url, create=create, **kwargs)
    migrate(engine)
    return engine
