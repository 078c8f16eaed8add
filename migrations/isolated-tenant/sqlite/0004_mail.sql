-- The same tables as the Postgres migration, with SQLite types (UUIDs as 16-byte blobs).
-- Mail expansion (issue 5): the group's sender policy, the stored messages and their delivery
-- queue, and what bounces taught us. Nothing here names a person in clear (INV-5):
--   * owners' addresses and each delivery's recipients are sealed (AEAD, associated data names
--     the row), so a dump shows neither who receives a group's mail nor that two deliveries
--     of different groups go to the same person;
--   * a stored message is sealed too (it is mail content), and is deleted once every delivery
--     of it is final; a delivered row keeps no recipient;
--   * a bad delivery address is found by a keyed hash under its own subkey (mail_tag), which
--     links to no identity and no membership row.

-- Who may send to a group: 'anyone' (from the corporate domains), 'members' or 'owners'.
-- Written when control-api provisions the group or changes its owners or policy.
CREATE TABLE mail_group_policy (
    group_id       BLOB   PRIMARY KEY NOT NULL REFERENCES distribution_groups (group_id) ON DELETE CASCADE,
    sender_policy  TEXT   NOT NULL CHECK (sender_policy IN ('anyone', 'members', 'owners')),
    sealed_owners  BLOB   NOT NULL,
    key_id         TEXT   NOT NULL CHECK (length(key_id) BETWEEN 1 AND 32)
);

-- One stored copy of each accepted message, headers already cleaned (INV-7).
CREATE TABLE mail_messages (
    id              BLOB   PRIMARY KEY NOT NULL,
    group_id        BLOB   NOT NULL,
    sealed_message  BLOB   NOT NULL,
    key_id          TEXT   NOT NULL CHECK (length(key_id) BETWEEN 1 AND 32)
);

-- The queue: one row per batch of recipients handed to the relay in one SMTP transaction.
-- state: 'queued' (waiting or leased), 'delivered', 'dead' (dead letter after the last attempt).
-- A worker leases a row (lease_owner, lease_until_ms) so replicas and restarts never send it
-- twice at once; an expired lease (a crashed worker) makes it claimable again.
CREATE TABLE mail_deliveries (
    id                 BLOB     PRIMARY KEY NOT NULL,
    message_id         BLOB     NOT NULL REFERENCES mail_messages (id) ON DELETE CASCADE,
    sealed_recipients  BLOB     NOT NULL,
    key_id             TEXT     NOT NULL CHECK (length(key_id) BETWEEN 1 AND 32),
    recipients         INTEGER  NOT NULL CHECK (recipients >= 0),
    state              TEXT     NOT NULL CHECK (state IN ('queued', 'delivered', 'dead')),
    attempts           INTEGER  NOT NULL DEFAULT 0,
    next_attempt_ms    BIGINT   NOT NULL,
    lease_owner        BLOB,
    lease_until_ms     BIGINT   NOT NULL DEFAULT 0,
    bounce_token       TEXT     NOT NULL UNIQUE
);

CREATE INDEX mail_deliveries_due ON mail_deliveries (state, next_attempt_ms);
CREATE INDEX mail_deliveries_by_message ON mail_deliveries (message_id);

-- Delivery addresses that bounced hard; 'bad' once they bounced too often. Counts leave only
-- as totals.
CREATE TABLE mail_bad_addresses (
    address_tag   BLOB     PRIMARY KEY CHECK (length(address_tag) = 32),
    hard_bounces  INTEGER  NOT NULL,
    bad           BOOLEAN  NOT NULL DEFAULT 0
);

-- Totals of what the tenant consumed instead of forwarding (bounces, auto-replies).
CREATE TABLE mail_counters (
    name   TEXT    PRIMARY KEY,
    total  BIGINT  NOT NULL
);
