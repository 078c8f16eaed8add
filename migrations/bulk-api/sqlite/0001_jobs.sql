-- bulk-api's jobs. This table holds a job's bookkeeping only: who submitted it, where it is,
-- and counts. Job input (who is to be added or removed) lives elsewhere, sealed, and is purged
-- when the job ends (INV-5); reports are counts by reason, never per person (INV-3).
-- The same table as the Postgres migration: ids are 16-byte UUID blobs (how sqlx binds a Uuid
-- here), times are milliseconds since the Unix epoch.
CREATE TABLE jobs (
    id            BLOB     PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    state         TEXT     NOT NULL
                           CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- The operator who submitted the job (never a member of the groups it touches).
    submitted_by  TEXT     NOT NULL CHECK (length(submitted_by) BETWEEN 1 AND 256),
    created_at    INTEGER  NOT NULL,
    total         INTEGER  NOT NULL DEFAULT 0 CHECK (total >= 0),
    applied       INTEGER  NOT NULL DEFAULT 0 CHECK (applied >= 0),
    rejected      INTEGER  NOT NULL DEFAULT 0 CHECK (rejected >= 0),
    CHECK (applied + rejected <= total)
);

-- Listing newest first, with the id as a tie-breaker for a stable order.
CREATE INDEX jobs_newest_first ON jobs (created_at DESC, id DESC);
