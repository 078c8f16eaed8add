-- The tamper-evident audit chain (issue 6); see the Postgres migration of the same number.
-- SQLite has no grants: triggers refuse UPDATE and DELETE (SQLite has no TRUNCATE; its
-- "truncate optimisation" is a DELETE without WHERE, which the trigger refuses too, since a
-- table with a DELETE trigger is never truncated that way).
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY CHECK (seq > 0),
    at_ms INTEGER NOT NULL,
    service TEXT NOT NULL,
    actor TEXT,
    action TEXT NOT NULL,
    group_id TEXT,
    subject TEXT,
    request_id TEXT,
    prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash BLOB NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

CREATE TRIGGER audit_events_no_update
    BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END;

CREATE TRIGGER audit_events_no_delete
    BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END;
