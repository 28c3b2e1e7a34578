#!/usr/bin/env python3
"""WAL pages an SQLite commit of invoice updates writes, by the columns the UPDATE sets.

SQLite rewrites the entry of every index on a column an UPDATE sets, whether the value changed
or not. This builds the invoices table with its indexes as the engine's migrations leave them
(2,000 invoices over 8 tenants, ~500-byte details), then commits batches of 100 updates of
random invoices that change only `version` and `data`, setting three column lists, and counts
the WAL frames each commit appends. Python's own sqlite3 module, no other dependency:

    python3 benches/sqlite_update_pages.py

Prints one JSON line: frames per commit for each column list, and SQLite's version.
"""

import json
import os
import random
import sqlite3
import tempfile

SCHEMA = """
CREATE TABLE invoices (
    tenant_id text NOT NULL, id text NOT NULL, number text NOT NULL, status text NOT NULL,
    customer_name text NOT NULL, customer_email text, currency text NOT NULL,
    total integer NOT NULL, due_date text, created_at integer NOT NULL,
    version integer NOT NULL, data text NOT NULL, details text NOT NULL,
    PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, number)
) WITHOUT ROWID;
CREATE INDEX invoices_created ON invoices (tenant_id, created_at, id);
CREATE INDEX invoices_status ON invoices (tenant_id, status, created_at, id);
CREATE INDEX invoices_due ON invoices (tenant_id, COALESCE(due_date, '9999-12-31'), id);
CREATE INDEX invoices_total ON invoices (tenant_id, total, id);
CREATE INDEX invoices_currency ON invoices (tenant_id, currency, created_at, id);
"""

PAGE = 4096
FRAME = PAGE + 24
BATCHES = 20
UPDATES_PER_BATCH = 100

# What a settlement set before (every column but the key and those fixed at insert), what an
# invoice's own status event sets, and what a settlement sets now.
COLUMN_LISTS = {
    "all": ["status", "customer_name", "customer_email", "currency", "total", "due_date",
            "version", "data", "details"],
    "status_version_data": ["status", "version", "data"],
    "version_data": ["version", "data"],
}


def frames_per_commit(directory, columns, rng):
    path = os.path.join(directory, f"{'-'.join(columns)}.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size = {PAGE}")
    db.execute("PRAGMA journal_mode = wal")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.executescript(SCHEMA)
    rows = []
    db.execute("BEGIN")
    for t in range(8):
        tenant = f"ten_{t:026d}"
        for i in range(250):
            invoice = f"inv_{t * 1000 + i:026d}"
            values = {
                "status": "open", "customer_name": f"Customer {i}",
                "customer_email": f"c{i}@example.com", "currency": "USD",
                "total": rng.randint(1_000, 10_000_000), "due_date": "2027-01-31",
                "details": "x" * 500,
            }
            rows.append((tenant, invoice, values))
            db.execute(
                "INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tenant, invoice, f"INV-{i:06d}", values["status"], values["customer_name"],
                 values["customer_email"], values["currency"], values["total"],
                 values["due_date"], rng.randint(0, 10**12), 1, '{"amountPaid":0}',
                 values["details"]),
            )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    sets = ", ".join(f"{c} = ?" for c in columns)
    frames = 0
    for batch in range(BATCHES):
        db.execute("BEGIN")
        for tenant, invoice, values in rng.sample(rows, UPDATES_PER_BATCH):
            changed = dict(values, version=batch + 2, data=f'{{"amountPaid":{batch}}}')
            db.execute(
                f"UPDATE invoices SET {sets} WHERE tenant_id = ? AND id = ?",
                [changed[c] for c in columns] + [tenant, invoice],
            )
        db.execute("COMMIT")
        frames += (os.path.getsize(path + "-wal") - 32) // FRAME
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return frames / BATCHES


def main():
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as directory:
        result = {
            name: frames_per_commit(directory, columns, rng)
            for name, columns in COLUMN_LISTS.items()
        }
    print(json.dumps({
        "bench": "sqlite_update_pages",
        "updates_per_commit": UPDATES_PER_BATCH,
        "wal_frames_per_commit": result,
        "sqlite": sqlite3.sqlite_version,
    }))


if __name__ == "__main__":
    main()
