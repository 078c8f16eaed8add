-- The isolated tenant: identities, distribution groups and sealed membership (INV-5).
--
-- Nothing here names a person in clear, and nothing lets two membership rows be linked to the
-- same person without the tenant's keys:
--   * an identity is found by a keyed hash of its subject (subject_tag); who it is (subject,
--     address, kind) is sealed, and so is the list of its groups, padded to 16-entry blocks;
--   * a membership row is found by a keyed hash of (group, identity) that differs per group,
--     and carries the identity id sealed under associated data that names the group;
--   * no row has a timestamp, a sequence or any other column that orders or links rows.
-- Sealed values are nonce (24 bytes) || XChaCha20-Poly1305 ciphertext; key_id names the master
-- key that sealed them, so keys can be rotated.

-- The mail side of a catalog group: its address and the name its mail carries. No owner, no
-- label, no member: the catalog (control-api) holds those, and the members are below.
CREATE TABLE distribution_groups (
    group_id      UUID  PRIMARY KEY,
    address       TEXT  NOT NULL UNIQUE CHECK (length(address) BETWEEN 3 AND 254),
    display_name  TEXT  NOT NULL CHECK (length(display_name) BETWEEN 1 AND 120)
);

-- A person or agent known to the tenant: a guest identity with sign-in disabled, created the
-- first time someone is added to a group. It can never sign in (INV-9): the CHECK makes that a
-- property of the schema, not of the code.
CREATE TABLE identities (
    id               UUID     PRIMARY KEY,
    subject_tag      BYTEA    NOT NULL UNIQUE CHECK (length(subject_tag) = 32),
    sealed_profile   BYTEA    NOT NULL,
    sealed_groups    BYTEA    NOT NULL,
    key_id           TEXT     NOT NULL CHECK (length(key_id) BETWEEN 1 AND 32),
    sign_in_enabled  BOOLEAN  NOT NULL DEFAULT FALSE CHECK (NOT sign_in_enabled),
    disabled         BOOLEAN  NOT NULL DEFAULT FALSE
);

-- One row per (group, identity). group_id is in clear so a group can be counted (as a bucket,
-- INV-4) and removed; who the row is about is not.
CREATE TABLE memberships (
    member_tag       BYTEA  PRIMARY KEY CHECK (length(member_tag) = 32),
    group_id         UUID   NOT NULL REFERENCES distribution_groups (group_id),
    sealed_identity  BYTEA  NOT NULL,
    key_id           TEXT   NOT NULL CHECK (length(key_id) BETWEEN 1 AND 32)
);

-- Counting and deprovisioning a group.
CREATE INDEX memberships_by_group ON memberships (group_id);
