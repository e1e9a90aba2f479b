"""conveyor's SQLite backend: ``sqlite:///path.db``, a durable embedded broker.

Several processes share one database file with no server: streams, consumer groups,
per-consumer pending entries with delivery counts, claims, heartbeats, dead letters and
retention, all in SQLite (WAL mode, through apsw). `open_backend` is the entry point
`conveyor.connect()` finds; a `SqliteBackend` opens a `SqliteSession` per consumer.
"""

from conveyor_sqlite.backend import CAPABILITIES, SqliteBackend, open_backend
from conveyor_sqlite.session import SqliteSession
from conveyor_sqlite.settings import SqliteSettings

__all__ = [
    "CAPABILITIES",
    "SqliteBackend",
    "SqliteSession",
    "SqliteSettings",
    "open_backend",
]
