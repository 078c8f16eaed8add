-- Relying parties (issue 18): apps an operator registered, which ask Hush whether a person
-- presenting their own token may use one of their resources. No table here names a member
-- (INV-1): a binding says which group guards a resource, never who is in it. The same tables
-- as the Postgres migration: ids are 16-byte UUID blobs, booleans 0/1.

-- An app. `audience` is the `aud` of everything Hush signs for it. Its credential is shown once,
-- when issued; only its SHA-256 (lower-case hex) is kept.
CREATE TABLE relying_parties (
    id                 BLOB     PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name               TEXT     NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    audience           TEXT     NOT NULL UNIQUE CHECK (length(audience) BETWEEN 1 AND 255),
    credential_sha256  TEXT     NOT NULL CHECK (length(credential_sha256) = 64),
    enabled            BOOLEAN  NOT NULL CHECK (enabled IN (0, 1)),
    created_at         BIGINT   NOT NULL
);

-- A resource an app protects, under a sensitivity label (a label a resource uses cannot be
-- deleted). Its name is unique within its app.
CREATE TABLE resources (
    id             BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    relying_party  BLOB    NOT NULL REFERENCES relying_parties (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    label          TEXT    NOT NULL REFERENCES labels (name),
    created_at     BIGINT  NOT NULL,
    UNIQUE (relying_party, name)
);
CREATE INDEX resources_by_label ON resources (label);

-- A group guarding a resource: bound by one of its owners (`bound_by`, sealed like owners),
-- only when the group's label ranks at least as high as the resource's.
CREATE TABLE resource_bindings (
    resource_id  BLOB    NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    group_id     BLOB    NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    bound_by     TEXT    NOT NULL CHECK (length(bound_by) BETWEEN 1 AND 512),
    bound_at     BIGINT  NOT NULL,
    PRIMARY KEY (resource_id, group_id)
);
CREATE INDEX resource_bindings_by_group ON resource_bindings (group_id);
