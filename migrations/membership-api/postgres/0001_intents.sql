-- membership-api owns membership *intents* only: requests to join and invite codes. It never
-- holds a membership list; the isolated tenant is the membership truth (INV-1).
-- Times are milliseconds since the Unix epoch (BIGINT), the same on both backends.

-- A request to join a group whose join policy is `approval`. Owners see the requester (that is
-- what asking for approval means), so the subject is kept while the request is pending and the
-- row is kept as a record once decided.
CREATE TABLE join_requests (
    id                UUID    PRIMARY KEY,
    group_id          UUID    NOT NULL,
    requester_subject TEXT    NOT NULL CHECK (length(requester_subject) BETWEEN 1 AND 256),
    status            TEXT    NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'approved', 'rejected', 'withdrawn')),
    created_at        BIGINT  NOT NULL,
    decided_at        BIGINT,
    -- A request is decided exactly when it has left `pending`.
    CHECK ((status = 'pending') = (decided_at IS NULL))
);

-- At most one open request per person and group: asking twice is the same request.
CREATE UNIQUE INDEX join_requests_one_pending
    ON join_requests (group_id, requester_subject) WHERE status = 'pending';

-- The owners' queue: a group's pending requests, oldest first.
CREATE INDEX join_requests_queue
    ON join_requests (group_id, created_at) WHERE status = 'pending';

-- An invite code for a group whose join policy is `invite`. Only a hash of the code is stored:
-- the code is shown once to the owner who made it, so a dump of this table cannot be used to
-- join anything.
CREATE TABLE invites (
    id          UUID     PRIMARY KEY,
    group_id    UUID     NOT NULL,
    code_hash   BYTEA    NOT NULL UNIQUE,
    max_uses    INTEGER  NOT NULL CHECK (max_uses > 0),
    uses        INTEGER  NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    expires_at  BIGINT   NOT NULL,
    revoked     BOOLEAN  NOT NULL DEFAULT FALSE,
    created_by  TEXT     NOT NULL CHECK (length(created_by) BETWEEN 1 AND 256),
    created_at  BIGINT   NOT NULL,
    CHECK (expires_at > created_at)
);

-- An owner's view of a group's invites.
CREATE INDEX invites_by_group ON invites (group_id, created_at);
