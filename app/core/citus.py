"""Hereabouts on Citus: a local three-node cluster for tests and trials, and the schema's placement.

`CitusCluster` is a coordinator plus two workers on loopback ports, each an `EmbeddedCluster`
(the same manager as the single-node default, run as the same unprivileged user when root) with
`citus` preloaded. All nodes share one generated password; the nodes reach each other with it
through a `.pgpass` file (`PGPASSFILE` of the server processes). Creating a database creates it
on every node with `citus` and `postgis`, and registers the coordinator and the workers in it.
Citus itself is not in Debian's archive: `make test-citus` builds it from the vendored source
(scripts/install-citus.sh); production nodes install Citus's packages (docs/scaling.md).

`place_tables()` decides where every table lives (docs/scaling.md, "Sharding with Citus"): the
per-subject tables of the ping path are distributed by subject and co-located; every other table
is a reference table (copied to every node). It is idempotent and runs from migration 0027 and
after every `alembic upgrade` on Citus, so tables added by later migrations are placed too.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.core.cluster import ClusterError, EmbeddedCluster, _is_root, find_pg_bindir

# Tables distributed by subject (device or field worker), co-located with each other: everything
# the ping path reads and writes per subject. Table -> distribution column.
DISTRIBUTED: dict[str, str] = {
    "pings": "subject_id",
    "ingest_waypoint_anchors": "subject_id",
    # a subject's row (its last fix, and the lock that serialises its batches) and its presence
    # at places: with the subject filters of the ping functions, a single subject's read and
    # write each run on the one worker holding its shards (migration 0036)
    "presence_subjects": "subject_id",
    "presence": "subject_id",
    # the 202 path's queue: a subject's queued fixes next to its other rows, so the enqueue,
    # the claim's read of the fixes and the evaluator's delete go to one worker (migration 0043)
    "ping_queue": "subject_id",
}
# the co-location group's anchor
COLOCATE_WITH = "pings"
SHARD_COUNT = 32
# never placed: PostGIS's own table and Alembic's bookkeeping stay local to the coordinator
LOCAL_ONLY = frozenset({"spatial_ref_sys", "alembic_version"})

NODE_CONF = """
# Citus node (app/core/citus.py)
shared_preload_libraries = 'citus'
shared_buffers = 128MB
max_prepared_transactions = 200
# every database with citus runs a maintenance daemon (a background worker), and a shard move
# needs a logical replication apply worker: PostgreSQL's 8 slots ran out with a few test
# databases, and the move then waited forever
max_worker_processes = 32
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
citus.node_conninfo = 'sslmode=prefer'
# a node's connections to itself (shard moves) go to its loopback address too
citus.local_hostname = '127.0.0.1'
citus.log_remote_commands = off
# single- vs multi-shard statement counts (citus_stat_counters, docs/scaling.md)
citus.enable_stat_counters = on
"""


def has_citus(conn: Connection) -> bool:
    """Whether the `citus` extension is installed in this database."""
    return bool(conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")).scalar())


def _public_tables(conn: Connection) -> list[str]:
    """Ordinary and partitioned tables of the public schema, partitions excluded."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_class c "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition ORDER BY c.relname"
        )
    )
    return [r[0] for r in rows]


def _placed(conn: Connection) -> dict[str, str]:
    """Placed tables -> 'h' (distributed), 'r' (reference) or 'l' (Citus local table)."""
    rows = conn.execute(
        text(
            "SELECT logicalrelid::regclass::text, CASE WHEN partmethod = 'h' THEN 'h' "
            "WHEN repmodel = 't' THEN 'r' ELSE 'l' END FROM pg_dist_partition"
        )
    )
    return {r[0]: r[1] for r in rows}


def _referenced_first(conn: Connection, tables: list[str]) -> list[str]:
    """`tables` ordered so that a table comes after every table its foreign keys point to."""
    edges: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in conn.execute(
        text(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
        )
    ):
        if child in edges and parent in edges and child != parent:
            edges[child].add(parent)
    ordered: list[str] = []
    seen: set[str] = set()

    def visit(t: str) -> None:
        if t in seen:
            return
        seen.add(t)
        for parent in sorted(edges[t]):
            visit(parent)
        ordered.append(t)

    for t in tables:
        visit(t)
    return ordered


def place_tables(conn: Connection) -> list[str]:
    """Make every public table distributed (DISTRIBUTED) or a reference table; return the changed.

    A no-op without Citus. Tables are placed referenced-first, so each foreign key points to a
    table that is already a reference table when its owner is placed.
    """
    if not has_citus(conn):
        return []
    tables = [t for t in _public_tables(conn) if t not in LOCAL_ONLY]
    # triggers are copied onto every placement (devices' token-revocation trigger notifies only
    # on the coordinator: migration 0027)
    conn.execute(text("SET LOCAL citus.enable_unsafe_triggers = on"))
    placed = _placed(conn)
    changed: list[str] = []
    # the co-location anchor first, so that every other distributed table can follow it
    tables.sort(key=lambda t: t != COLOCATE_WITH)
    for table in _referenced_first(conn, tables):
        method = placed.get(table)
        # a key without the distribution column (before the migration that adds it to the key,
        # e.g. 0043 for ping_queue): a reference table until then
        if table in DISTRIBUTED and _keys_include(conn, table, DISTRIBUTED[table]):
            if method == "h":
                continue
            if _has_identity(conn, table):  # Citus converts none of these: copied instead
                anchor = COLOCATE_WITH if _placed(conn).get(COLOCATE_WITH) == "h" else None
                rebuild_placed(conn, table, DISTRIBUTED[table], colocate_with=anchor)
                changed.append(table)
                continue
            if method == "r":  # a reference table of an earlier placement: copied back first
                undistribute_keeping_foreign_keys(conn, table)
            # a Citus local table (added by Citus for a foreign key to a reference table) is
            # distributed as it is
            anchor = COLOCATE_WITH if table != COLOCATE_WITH else "default"
            if anchor != "default" and _placed(conn).get(anchor) != "h":
                anchor = "default"
            if anchor == "default":
                conn.execute(
                    text(
                        "SELECT create_distributed_table(:t, :col, colocate_with => 'default', "
                        "shard_count => :n)"
                    ),
                    {"t": table, "col": DISTRIBUTED[table], "n": SHARD_COUNT},
                )
            else:  # the anchor's shards (Citus refuses a shard count with a table to follow)
                conn.execute(
                    text("SELECT create_distributed_table(:t, :col, colocate_with => :anchor)"),
                    {"t": table, "col": DISTRIBUTED[table], "anchor": anchor},
                )
        else:
            if method == "r":
                continue
            if method == "h" and _has_identity(conn, table):
                rebuild_placed(conn, table, None)  # undistribute_table refuses it
                changed.append(table)
                continue
            if method == "h":
                conn.execute(text("SELECT undistribute_table(:t)"), {"t": table})
            conn.execute(text("SELECT create_reference_table(:t)"), {"t": table})
        changed.append(table)
    _plan_functions_per_call(conn)
    _upserts_without_now(conn)
    # A transaction that writes several shards of a distributed table and then a reference
    # table with foreign keys (a ping batch: pings, then presence and events) must use one
    # connection per node, or Citus refuses the second write.
    # Updates and deletes of a reference table take row locks on every copy, in one node order,
    # as on a single node; without this Citus serialises all of them cluster-wide with a lock
    # per table, and two ping groups that write presence and events in turn deadlock.
    database = conn.execute(text("SELECT current_database()")).scalar_one()
    for setting in (
        "citus.multi_shard_modify_mode = sequential",
        "citus.all_modifications_commutative = on",
    ):
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" SET {setting}')
    return changed


# `updated_at = now()` in an upsert's DO UPDATE list, after an assignment from EXCLUDED
_UPSERT_NOW = re.compile(r"(EXCLUDED\.\w+,\s*)updated_at = now\(\)")


def _upserts_without_now(conn: Connection) -> None:
    """Upserts in our functions take `updated_at` from the proposed row, not from now().

    Citus refuses a non-IMMUTABLE function in `ON CONFLICT DO UPDATE SET` on a distributed or
    reference table; the proposed row's `updated_at` is its column default, now(), evaluated
    once by the coordinator, so the value stored is the same.
    """
    rows = conn.execute(
        text(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p "
            "WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'hereabouts\\_%' "
            "AND p.prokind = 'f' AND p.prosrc ~ 'DO UPDATE' AND p.prosrc ~ 'updated_at = now\\(\\)'"
        )
    )
    for (definition,) in rows.all():
        patched = _UPSERT_NOW.sub(r"\1updated_at = EXCLUDED.updated_at", definition)
        if patched != definition:
            conn.exec_driver_sql(patched)


def _plan_functions_per_call(conn: Connection) -> None:
    """Plan the statements of our PL/pgSQL functions with their arguments' values, every call.

    Citus cannot plan a generic plan whose arrays are parameters ("could not create
    distributed plan ... parameters"); a custom plan sees the values. Set on every function
    named `hereabouts_*` after each upgrade, so a function a later migration replaces keeps it.
    """
    rows = conn.execute(
        text(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_language l "
            "ON l.oid = p.prolang WHERE p.pronamespace = 'public'::regnamespace "
            "AND p.proname LIKE 'hereabouts\\_%' AND l.lanname = 'plpgsql' "
            "AND NOT coalesce('plan_cache_mode=force_custom_plan' = ANY(p.proconfig), false)"
        )
    )
    for (signature,) in rows.all():
        conn.execute(text(f"ALTER FUNCTION {signature} SET plan_cache_mode = force_custom_plan"))


def undistribute_keeping_foreign_keys(conn: Connection, table: str) -> None:
    """Make a placed table a plain local one again, with the same foreign keys.

    `undistribute_table` refuses a table with foreign keys (unless it undistributes every table
    they reach), so they are dropped first and added back on the local table.
    """
    fks = conn.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid = CAST(:t AS regclass) ORDER BY conname"
        ),
        {"t": table},
    ).all()
    for name, _ in fks:
        conn.exec_driver_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    conn.execute(text("SELECT undistribute_table(:t)"), {"t": table})
    for name, definition in fks:
        conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')


def _keys_include(conn: Connection, table: str, column: str) -> bool:
    """Whether every primary and unique key of `table` includes `column` (as Citus requires)."""
    return not conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint c JOIN pg_attribute a "
            "ON a.attrelid = c.conrelid AND a.attname = :c "
            "WHERE c.conrelid = CAST(:t AS regclass) AND c.contype IN ('p', 'u') "
            "AND NOT a.attnum = ANY(c.conkey))"
        ),
        {"t": table, "c": column},
    ).scalar()


def _has_identity(conn: Connection, table: str) -> bool:
    return bool(
        conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
                "AND attnum > 0 AND NOT attisdropped AND attidentity <> '')"
            ),
            {"t": table},
        ).scalar()
    )


def rebuild_placed(
    conn: Connection, table: str, distribute_by: str | None, *, colocate_with: str | None = None
) -> None:
    """Copy `table` into a new table placed as wanted: distributed by `distribute_by` (with
    `colocate_with`'s shards), or a reference table when None; rows, keys, indexes, foreign
    keys, names and the identity's next value kept.

    Citus converts no table with an identity column (`undistribute_table`, and
    `create_distributed_table` of a Citus local table: "cannot complete operation on a table
    with identity column"), but places a new plain table that has one. No foreign key may
    point to `table`.
    """
    incoming = conn.execute(
        text(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
            "AND confrelid = CAST(:t AS regclass) AND conrelid <> confrelid"
        ),
        {"t": table},
    ).scalar_one()
    if incoming:
        raise ValueError(f"{table}: foreign keys point to it; rebuild_placed cannot keep them")
    constraints = conn.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u', 'f', 'c') "
            "ORDER BY contype = 'f', conname"
        ),
        {"t": table},
    ).all()
    indexes = (
        conn.execute(
            text(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "WHERE i.indrelid = CAST(:t AS regclass) AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1"
            ),
            {"t": table},
        )
        .scalars()
        .all()
    )
    identity = conn.execute(
        text(
            "SELECT a.attname, pg_get_serial_sequence(:t, a.attname) FROM pg_attribute a "
            "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND a.attidentity <> ''"
        ),
        {"t": table},
    ).all()
    new = f"{table}_placing"
    conn.execute(text("SET LOCAL citus.multi_shard_modify_mode = sequential"))
    conn.exec_driver_sql(
        f'CREATE TABLE "{new}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING IDENTITY '
        "INCLUDING GENERATED)"
    )
    if distribute_by is None:
        conn.execute(text("SELECT create_reference_table(:t)"), {"t": new})
    elif colocate_with is None:
        conn.execute(
            text("SELECT create_distributed_table(:t, :c, shard_count => :n)"),
            {"t": new, "c": distribute_by, "n": SHARD_COUNT},
        )
    else:
        conn.execute(
            text("SELECT create_distributed_table(:t, :c, colocate_with => :a)"),
            {"t": new, "c": distribute_by, "a": colocate_with},
        )
    conn.exec_driver_sql(f'INSERT INTO "{new}" SELECT * FROM "{table}"')
    for column, sequence in identity:
        # the next value continues the old one (the copy above kept the values: identities
        # GENERATED BY DEFAULT, as every one of ours is)
        last = conn.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence(:t, :c), :v, :called)"),
            {"t": new, "c": column, "v": last[0], "called": last[1]},
        )
    conn.exec_driver_sql(f'DROP TABLE "{table}"')
    conn.exec_driver_sql(f'ALTER TABLE "{new}" RENAME TO "{table}"')
    for column, sequence in identity:
        current = conn.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}
        ).scalar_one()
        if current != sequence:
            bare = sequence.split(".")[-1].strip('"')
            conn.exec_driver_sql(f'ALTER SEQUENCE {current} RENAME TO "{bare}"')
    for name, definition, _ in constraints:
        conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    for definition in indexes:
        conn.exec_driver_sql(definition)


def unplace_tables(conn: Connection) -> list[str]:
    """Turn every placed public table back into a plain local table (the downgrade of 0027)."""
    if not has_citus(conn):
        return []
    changed: list[str] = []
    for table in reversed(_referenced_first(conn, _public_tables(conn))):
        if table in _placed(conn):
            conn.execute(
                text("SELECT undistribute_table(:t, cascade_via_foreign_keys => true)"),
                {"t": table},
            )
            changed.append(table)
    return changed


# -- a local cluster -----------------------------------------------------------------------------


@dataclass
class CitusCluster(EmbeddedCluster):
    """A coordinator (this cluster) and `len(worker_ports)` workers, all on 127.0.0.1."""

    worker_ports: tuple[int, ...] = ()
    workers: list[EmbeddedCluster] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.extra_conf = NODE_CONF
        self.server_env = {"PGPASSFILE": str(self.pgpass_file)}
        self.workers = [
            EmbeddedCluster(
                data_dir=self.data_dir.parent / f"{self.data_dir.name}-worker{i}",
                port=port,
                user=self.user,
                run_as=self.run_as,
                extra_conf=NODE_CONF,
                server_env={"PGPASSFILE": str(self.pgpass_file)},
            )
            for i, port in enumerate(self.worker_ports, start=1)
        ]

    @property
    def pgpass_file(self) -> Path:
        return self.data_dir / "run" / "pgpass"

    @property
    def nodes(self) -> list[EmbeddedCluster]:
        return [self, *self.workers]

    def _share_password(self) -> None:
        """Give every worker the coordinator's password, and the servers a .pgpass with it."""
        password = self.password()
        for worker in self.workers:
            worker.data_dir.mkdir(parents=True, exist_ok=True)
            if not worker.password_file.exists():
                fd = os.open(worker.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(password + "\n")
            elif worker.password() != password:
                raise ClusterError(
                    f"{worker.password_file} differs from {self.password_file}: "
                    "the nodes of one Citus cluster share one password"
                )
        self._ensure_dirs()
        self.pgpass_file.write_text(
            "".join(
                f"{host}:{n.port}:*:{self.user}:{password}\n"
                for n in self.nodes
                for host in ("127.0.0.1", "localhost")
            )
        )
        self.pgpass_file.chmod(0o600)
        if _is_root():
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.pgpass_file, entry.pw_uid, entry.pw_gid)

    def citus_available(self) -> bool:
        bindir = find_pg_bindir()
        if bindir is None:
            return False
        libdir = Path(
            self._run([str(bindir / "pg_config"), "--pkglibdir"]).stdout.strip()
            if (bindir / "pg_config").exists()
            else "/nonexistent"
        )
        return (libdir / "citus.so").exists()

    def ensure_running(self) -> str:
        self._share_password()
        for worker in self.workers:
            worker.ensure_running()
        url = super().ensure_running()
        if self.psql("SHOW shared_preload_libraries") != "citus":
            raise ClusterError(
                "the Citus coordinator does not preload citus: is Citus installed "
                "(docs/scaling.md, 'A Citus cluster for tests')?"
            )
        return url

    def is_running(self, bindir: Path | None = None) -> bool:
        return all(EmbeddedCluster.is_running(n, bindir) for n in self.nodes)

    def ensure_database(self, name: str) -> None:
        """Create `name` on every node with citus + postgis; register the nodes in it."""
        for node in self.nodes:
            EmbeddedCluster.ensure_database(node, name)
            node.psql("CREATE EXTENSION IF NOT EXISTS citus", database=name)
            node.psql("CREATE EXTENSION IF NOT EXISTS postgis", database=name)
        self.psql(f"SELECT citus_set_coordinator_host('127.0.0.1', {self.port})", database=name)
        for worker in self.workers:
            self.psql(f"SELECT citus_add_node('127.0.0.1', {worker.port})", database=name)

    def drop_database(self, name: str) -> None:
        for node in self.nodes:
            EmbeddedCluster.drop_database(node, name)

    def stop(self, mode: str = "fast") -> None:
        super().stop(mode)
        for worker in self.workers:
            worker.stop(mode)
