"""The alerts already sent, in one SQLite file that every process of the installation shares.

Exactly once: `claim(key)` inserts the key and says whether this caller is the first, atomically across
processes (SQLite's INSERT OR IGNORE under its file lock), so two sensors, a restarted daemon or a re-run of the
same evaluation never send one alert twice. The file lives under DAGSTER_HOME (Settings.resolved_alert_state),
which survives daemon restarts; sensor cursors only say how far each sensor has read the event log.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from spy_pipeline.io.alerts.model import Alert, Delivery

KEEP_DAYS = 90  # keys older than this are forgotten (nothing re-announces a fact that old)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT NOT NULL, claimed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
    error TEXT NOT NULL, digest INTEGER NOT NULL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (key);
"""


class AlertLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection for this object's lifetime (opening one per claim costs ~20 ms); autocommit; a short busy
        # timeout: a ledger locked by another process delays a sensor tick by at most this.
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: survives a crashed process, no fsync per claim
        self._db.executescript(_SCHEMA)
        self._db.execute("DELETE FROM alerts WHERE claimed_at < ?", (time.time() - KEEP_DAYS * 86400,))
        self._db.execute("DELETE FROM deliveries WHERE at < ?", (time.time() - KEEP_DAYS * 86400,))

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def claim(self, alert: Alert) -> bool:
        """True for the first caller ever with this key (it must send it); False for every later one."""
        return bool(self.claim_many([alert]))

    def claim_many(self, alerts: Sequence[Alert]) -> list[Alert]:
        """The alerts this caller is the first ever to claim, in one transaction (a day's scanner events)."""
        claimed = []
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            for alert in alerts:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO alerts (key, kind, title, claimed_at) VALUES (?, ?, ?, ?)",
                    (alert.key, alert.kind, alert.title, time.time()),
                )
                if cursor.rowcount == 1:
                    claimed.append(alert)
            db.execute("COMMIT")
        return claimed

    def seen(self, key: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM alerts WHERE key = ?", (key,)).fetchone() is not None

    def record(self, delivery: Delivery) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT INTO deliveries (key, channel, status, attempts, error, digest, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(key, delivery.channel, delivery.status, delivery.attempts, delivery.error, int(delivery.digest),
                  time.time()) for key in delivery.keys],
            )

    def deliveries(self, key: str) -> list[tuple[str, str, int]]:
        """(channel, status, attempts) of every delivery of `key`, oldest first."""
        with self._connect() as db:
            return db.execute(
                "SELECT channel, status, attempts FROM deliveries WHERE key = ? ORDER BY at, rowid", (key,)
            ).fetchall()
