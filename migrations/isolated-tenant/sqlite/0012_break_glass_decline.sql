-- Break-glass requests can be declined by a privacy officer (issue 19: the officers' screen),
-- and officers see who asked: the requester's subject and address, sealed like the person asked
-- about and the justification (key_id, bound to the request's id). A decline may carry a reason
-- for the auditor, sealed the same way. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt; with secure_delete the old pages are zeroed.
CREATE TABLE break_glass_requests_new (
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
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'redeemed', 'declined')),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    grant_expires_ms INTEGER,
    redeemed_ms INTEGER,
    sealed_requester BLOB,
    sealed_decline BLOB,
    decided_ms INTEGER
);
INSERT INTO break_glass_requests_new (id, group_id, scope, sealed_target, sealed_justification,
    key_id, recipient, requester, approver1, approver2, state, created_ms, expires_ms,
    grant_expires_ms, redeemed_ms)
SELECT id, group_id, scope, sealed_target, sealed_justification, key_id, recipient, requester,
    approver1, approver2, state, created_ms, expires_ms, grant_expires_ms, redeemed_ms
FROM break_glass_requests;
DROP TABLE break_glass_requests;
ALTER TABLE break_glass_requests_new RENAME TO break_glass_requests;
CREATE INDEX break_glass_requests_by_state ON break_glass_requests (state, expires_ms);
