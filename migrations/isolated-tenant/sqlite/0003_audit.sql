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

-- Break-glass requests (INV-8): an auditor's request for one group's membership, approved by
-- two distinct privacy officers, redeemed once. People appear as per-group audit pseudonyms
-- (requester, approvers); the person asked about and the justification are sealed with the
-- tenant's seal key (key_id), bound to the request's id.
CREATE TABLE break_glass_requests (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('member-check', 'full-list')),
    sealed_target BLOB,
    sealed_justification BLOB NOT NULL,
    key_id TEXT NOT NULL,
    recipient TEXT,
    requester TEXT NOT NULL,
    approver1 TEXT,
    approver2 TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'redeemed')),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    grant_expires_ms INTEGER,
    redeemed_ms INTEGER
);
