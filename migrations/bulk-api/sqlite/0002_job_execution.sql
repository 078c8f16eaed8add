-- Jobs that run: intake, chunks with checkpoints and leases, counts by reason.
-- No job could be submitted before this migration, so `jobs` is rebuilt with the states and
-- counts execution needs.
--
-- Privacy: a job's input (who is to be added or removed) is held only in `job_chunks.sealed`,
-- sealed with bulk-api's AEAD key (INV-5); a chunk's input is cleared once the chunk is applied
-- and every chunk row goes when the job ends (succeeded, failed or cancelled). Counts are by
-- reason only, never per person (INV-3). `job_line_errors` holds line numbers and fixed reasons,
-- never the line's content.
DROP TABLE jobs;

CREATE TABLE jobs (
    id              BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    -- 'intake': the upload is still being read; never shown, removed if it never completes.
    state           TEXT    NOT NULL
                            CHECK (state IN ('intake', 'queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
    submitted_by    TEXT    NOT NULL CHECK (length(submitted_by) BETWEEN 1 AND 256),
    -- The caller's Idempotency-Key: a resubmit with the same key answers the same job.
    idempotency_key TEXT    CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    created_at      INTEGER  NOT NULL,
    updated_at      INTEGER  NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    total           INTEGER  NOT NULL DEFAULT 0 CHECK (total >= 0),
    applied         INTEGER  NOT NULL DEFAULT 0 CHECK (applied >= 0),
    rejected        INTEGER  NOT NULL DEFAULT 0 CHECK (rejected >= 0),
    rejected_unknown_identity INTEGER NOT NULL DEFAULT 0 CHECK (rejected_unknown_identity >= 0),
    rejected_label_refused    INTEGER NOT NULL DEFAULT 0 CHECK (rejected_label_refused >= 0),
    rejected_unknown_group    INTEGER NOT NULL DEFAULT 0 CHECK (rejected_unknown_group >= 0),
    invalid_lines   INTEGER  NOT NULL DEFAULT 0 CHECK (invalid_lines >= 0),
    chunks          INTEGER  NOT NULL DEFAULT 0 CHECK (chunks >= 0),
    chunks_done     INTEGER  NOT NULL DEFAULT 0 CHECK (chunks_done >= 0),
    -- Why a failed job failed, in words that name no person.
    error           TEXT,
    CHECK (applied + rejected <= total),
    CHECK (chunks_done <= chunks),
    UNIQUE (submitted_by, idempotency_key)
);

CREATE INDEX jobs_newest_first ON jobs (created_at DESC, id DESC);

CREATE TABLE job_chunks (
    job_id       BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq          INTEGER  NOT NULL CHECK (seq >= 0),
    ops          INTEGER  NOT NULL CHECK (ops > 0),
    -- nonce || XChaCha20-Poly1305 ciphertext of the chunk's operations; NULL once applied.
    sealed       BLOB,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'done')),
    -- The worker holding the chunk, until `lease_until` (ms); an expired lease is free.
    lease_owner  BLOB,
    lease_until  INTEGER,
    attempts     INTEGER  NOT NULL DEFAULT 0,
    -- Failed tries that will be retried ("failed and retrying" in the report).
    failures     INTEGER  NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
);

CREATE INDEX job_chunks_pending ON job_chunks (state, job_id, seq);

CREATE TABLE job_line_errors (
    job_id  BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    line    INTEGER  NOT NULL,
    reason  TEXT    NOT NULL,
    PRIMARY KEY (job_id, line)
);
