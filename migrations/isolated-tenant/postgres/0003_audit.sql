-- The tamper-evident audit chain (issue 6).
--
-- Every state change and every privileged read appends one row. Each row carries the hash of
-- the row before it (prev_hash) and its own hash over a canonical encoding of its fields
-- (computed by the tenant, see services/isolated-tenant/src/audit/chain.rs), so an edited,
-- removed or reordered row breaks the chain, and `hush audit verify` names the first one.
-- People appear only as keyed pseudonyms (`kid:hex`), per group (INV-5, INV-6).
--
-- The table is append-only: a trigger refuses UPDATE and DELETE, another refuses TRUNCATE, and
-- nobody but the owner holds those privileges. A superuser can still switch triggers off; the
-- signed checkpoints, kept outside the database, catch what they do then.
CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY CHECK (seq > 0),
    at_ms BIGINT NOT NULL,
    service TEXT NOT NULL,
    actor TEXT,
    action TEXT NOT NULL,
    group_id TEXT,
    subject TEXT,
    request_id TEXT,
    prev_hash BYTEA NOT NULL CHECK (length(prev_hash) = 32),
    hash BYTEA NOT NULL CHECK (length(hash) = 32)
);

-- The chain's head: the last sequence number and hash, locked (FOR UPDATE) by every append so
-- appends are serialised. It may be updated; `hush audit verify` never trusts it.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;

-- Break-glass requests (INV-8): an auditor's request for one group's membership, approved by
-- two distinct privacy officers, redeemed once. People appear as per-group audit pseudonyms
-- (requester, approvers); the person asked about and the justification are sealed with the
-- tenant's seal key (key_id), bound to the request's id.
CREATE TABLE break_glass_requests (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('member-check', 'full-list')),
    sealed_target BYTEA,
    sealed_justification BYTEA NOT NULL,
    key_id TEXT NOT NULL,
    recipient TEXT,
    requester TEXT NOT NULL,
    approver1 TEXT,
    approver2 TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'redeemed')),
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    grant_expires_ms BIGINT,
    redeemed_ms BIGINT
);
