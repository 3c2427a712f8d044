"""Receivers a worker process can import (module-level, no Django)."""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any


def count_notes(signal: Any, sender: Any, *, db: str, out: str, **named: Any) -> int:
    """Write to ``out`` how many notes the SQLite file ``db`` holds, read on
    a connection of its own (only what was committed), and where it ran."""
    con = sqlite3.connect(db, timeout=30)
    try:
        (n,) = con.execute("SELECT COUNT(*) FROM aftercommit_note").fetchone()
    finally:
        con.close()
    with open(out, "w") as f:
        f.write(f"{n} {os.getpid()} {threading.get_ident()}")
    return int(n)
