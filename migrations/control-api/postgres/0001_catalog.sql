-- control-api owns the group catalog and the label catalog. No table here holds a member, and
-- none can: the isolated tenant is the membership truth (INV-1).
-- Times are milliseconds since the Unix epoch (BIGINT), the same on both backends.

-- Sensitivity labels. A group names its label; a label in use cannot be deleted.
CREATE TABLE labels (
    name            TEXT     PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
    description     TEXT     NOT NULL CHECK (length(description) <= 2000),
    guests_allowed  BOOLEAN  NOT NULL,
    agents_allowed  BOOLEAN  NOT NULL,
    -- The allowed join policies, comma-separated in the order the admin gave them
    -- ('approval,invite'); at least one.
    join_policies   TEXT     NOT NULL CHECK (join_policies <> ''),
    sender_policy   TEXT     NOT NULL CHECK (sender_policy IN ('anyone', 'members', 'owners')),
    created_at      BIGINT   NOT NULL,
    updated_at      BIGINT   NOT NULL
);

-- "General" and "general" would be two labels no one could tell apart.
CREATE UNIQUE INDEX labels_name_folded ON labels (lower(name));

-- Seed data applied once per database (the default labels). Recorded so that a default label
-- an admin edited or deleted is never written back at the next start-up.
CREATE TABLE seeds (
    name        TEXT    PRIMARY KEY,
    applied_at  BIGINT  NOT NULL
);

-- The group catalog: what a group is called, where it is mailed, which label governs it, and
-- where it is in its life. The columns after `updated_at` belong to the provisioning saga.
CREATE TABLE groups (
    id               UUID     PRIMARY KEY,
    name             TEXT     NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    description      TEXT     NOT NULL CHECK (length(description) <= 2000),
    -- local@mail-domain, lowercase; never reused, even after the group is archived, so mail
    -- to an old address can never reach a new audience.
    contact_address  TEXT     NOT NULL UNIQUE CHECK (length(contact_address) BETWEEN 3 AND 254),
    label            TEXT     NOT NULL REFERENCES labels (name),
    join_policy      TEXT     NOT NULL CHECK (join_policy IN ('open', 'approval', 'invite')),
    state            TEXT     NOT NULL
                              CHECK (state IN ('provisioning', 'active', 'archiving', 'archived')),
    created_by       TEXT     NOT NULL CHECK (length(created_by) BETWEEN 1 AND 256),
    created_at       BIGINT   NOT NULL,
    updated_at       BIGINT   NOT NULL,
    -- When the saga should next work on the group (or, while a worker holds it, when that
    -- worker's lease runs out). Set exactly while there is tenant work to do.
    next_attempt_at  BIGINT,
    -- The lease of the worker currently calling the tenant for this group, if any.
    lease_token      UUID,
    -- Failed tenant calls since the group last changed state, and the last failure's reason.
    attempts         INTEGER  NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_attempt_at  BIGINT,
    last_error       TEXT,
    CHECK ((state IN ('provisioning', 'archiving')) = (next_attempt_at IS NOT NULL)),
    CHECK (lease_token IS NULL OR next_attempt_at IS NOT NULL)
);

-- Discovery: active groups in name order (the keyset the cursor walks).
CREATE INDEX groups_by_state_name ON groups (state, name, id);
-- The saga's queue: groups with tenant work, soonest first.
CREATE INDEX groups_due ON groups (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
-- "Is this label in use?"
CREATE INDEX groups_by_label ON groups (label);

-- A group's owners, by the IdP's subject. Owners are not members: owning a group says nothing
-- about being in it.
CREATE TABLE group_owners (
    group_id  UUID  NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    subject   TEXT  NOT NULL CHECK (length(subject) BETWEEN 1 AND 256),
    PRIMARY KEY (group_id, subject)
);
