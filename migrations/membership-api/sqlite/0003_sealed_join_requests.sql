-- Issue 16: join requests sealed at rest. A pending request's requester (subject, address,
-- kind) is sealed under membership-api's key, bound to its group and padded to one length;
-- rows are found by a keyed hash of the requester's subject. A denied request keeps only that
-- hash, for the requester's own view. Nothing in this table names anyone without the key.
--
-- Rows written before this migration are in the renamed table join_requests_legacy; the
-- service seals them into the new table when it opens the database (it holds the key, SQL does
-- not), deletes them, and drops the legacy table.
DROP INDEX join_requests_one_pending;
DROP INDEX join_requests_queue;
DROP INDEX join_requests_by_requester;
ALTER TABLE join_requests RENAME TO join_requests_legacy;

CREATE TABLE join_requests (
    id                BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    group_id          BLOB    NOT NULL CHECK (length(group_id) = 16),
    requester_tag     BLOB    NOT NULL CHECK (length(requester_tag) = 32),
    sealed_requester  BLOB,
    status            TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'denied')),
    created_at        INTEGER  NOT NULL,
    decided_at        INTEGER,
    -- A request is decided exactly when it has left `pending`.
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    -- The requester is kept while, and only while, an owner may still approve.
    CHECK ((status = 'pending') = (sealed_requester IS NOT NULL))
);

-- At most one open request per person and group: asking twice is the same request.
CREATE UNIQUE INDEX join_requests_one_pending
    ON join_requests (group_id, requester_tag) WHERE status = 'pending';

-- The owners' queue: a group's pending requests, oldest first.
CREATE INDEX join_requests_queue
    ON join_requests (group_id, created_at, id) WHERE status = 'pending';

-- The requester's own view of their requests.
CREATE INDEX join_requests_by_requester ON join_requests (requester_tag, created_at);
