"""Database functions kept as `.sql` files in the domain that owns them (`app/<domain>/sql/`).

The file is the function's one text, versioned with the code that calls it. A migration that
creates or changes a function executes the file (`read_sql("presence/sql/ping_read.sql")`),
so a function's SQL is never restated in a migration; tests/core/test_sql_files.py checks that
the migrated database runs exactly what the files say. Each file is one
`CREATE OR REPLACE FUNCTION`, in `LANGUAGE plpgsql` (names are resolved when it runs, so an
older migration may create the newest text); a change of arguments or result columns needs a
migration that drops the old function first.
"""

from __future__ import annotations

import re
from pathlib import Path

APP_ROOT = Path(__file__).resolve().parent.parent

# (file, function) pairs every migrated database must match
FUNCTIONS = {
    "presence/sql/claim_queued.sql": "hereabouts_claim_queued",
    "presence/sql/ensure_ping_partitions.sql": "hereabouts_ensure_ping_partitions",
    "presence/sql/ping_enqueue.sql": "hereabouts_ping_enqueue",
    "presence/sql/ping_read.sql": "hereabouts_ping_read",
    "presence/sql/ping_write.sql": "hereabouts_ping_write",
}


def read_sql(relpath: str) -> str:
    """The text of `app/<relpath>`."""
    return (APP_ROOT / relpath).read_text()


def function_body(sql: str) -> str:
    """The body between the `$fn$` quotes of a function's text (what pg_proc.prosrc holds)."""
    match = re.search(r"\$fn\$(.*)\$fn\$", sql, re.S)
    if match is None:
        raise ValueError("no $fn$ ... $fn$ body")
    return match.group(1)
