-- Issue 3: what approval needs, and nothing it does not.
--
-- A pending join request now carries the requester's address and identity kind (as their
-- token said when they asked), so an owner's approval can add them to the tenant and re-check
-- the group's label with that kind. An approved request is DELETED, not marked: a table of
-- approved requests would be a membership list at rest (INV-1). A denied request stays, for the
-- requester to see in their own view, but without the address or kind (no longer needed).
--
-- 0001's join_requests was never written by any released code (its store had `ping` only), so
-- it is replaced rather than altered: SQLite cannot change a CHECK constraint in place, and
-- both backends keep the same shape. Ids are 16-byte UUID blobs, as in 0001.
DROP TABLE join_requests;

CREATE TABLE join_requests (
    id                BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    group_id          BLOB    NOT NULL CHECK (length(group_id) = 16),
    requester_subject TEXT    NOT NULL CHECK (length(requester_subject) BETWEEN 1 AND 256),
    requester_email   TEXT    CHECK (length(requester_email) BETWEEN 3 AND 254),
    requester_kind    TEXT    CHECK (requester_kind IN ('member', 'guest', 'agent')),
    status            TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'denied')),
    created_at        INTEGER  NOT NULL,
    decided_at        INTEGER,
    -- A request is decided exactly when it has left `pending`.
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    -- Address and kind are kept while, and only while, an owner may still approve.
    CHECK ((status = 'pending') = (requester_email IS NOT NULL AND requester_kind IS NOT NULL))
);

-- At most one open request per person and group: asking twice is the same request.
CREATE UNIQUE INDEX join_requests_one_pending
    ON join_requests (group_id, requester_subject) WHERE status = 'pending';

-- The owners' queue: a group's pending requests, oldest first.
CREATE INDEX join_requests_queue
    ON join_requests (group_id, created_at, id) WHERE status = 'pending';

-- The requester's own view of their requests.
CREATE INDEX join_requests_by_requester ON join_requests (requester_subject, created_at);

-- Rules over token claims that approve a request automatically (no request row is written,
-- no owner sees who joined). `rules` is the JSON document owners PUT; absent = no rules.
CREATE TABLE claim_rules (
    group_id    BLOB    PRIMARY KEY NOT NULL CHECK (length(group_id) = 16),
    rules       TEXT    NOT NULL,
    updated_at  INTEGER  NOT NULL
);
