-- Owners sealed at rest (issue 16): every column that names a person now holds a value sealed
-- under control-api's key (`hs1.` + base64url, about 400 characters) or, for a group's creator,
-- a keyed tag (`ht1.` + 64 hex digits), so a copy of the database files names no owner. The
-- old length checks were written for clear subjects of at most 256 characters; SQLite cannot
-- drop a check, so the five small tables that had them are rebuilt without them. Triggers then
-- refuse a clear value in any row written from now on; rows copied here as they were are
-- sealed by control-api when it starts (src/seal.rs), and those updates pass the triggers.

CREATE TABLE group_owners_sealed (
    group_id  BLOB  NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    subject   TEXT  NOT NULL CHECK (length(subject) BETWEEN 1 AND 2048),
    PRIMARY KEY (group_id, subject)
);
INSERT INTO group_owners_sealed (group_id, subject) SELECT group_id, subject FROM group_owners;
DROP TABLE group_owners;
ALTER TABLE group_owners_sealed RENAME TO group_owners;

CREATE TABLE owner_invitations_sealed (
    group_id    BLOB    NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    subject     TEXT    NOT NULL CHECK (length(subject) BETWEEN 1 AND 2048),
    invited_by  TEXT    NOT NULL CHECK (length(invited_by) BETWEEN 1 AND 2048),
    invited_at  BIGINT  NOT NULL,
    PRIMARY KEY (group_id, subject)
);
INSERT INTO owner_invitations_sealed (group_id, subject, invited_by, invited_at)
    SELECT group_id, subject, invited_by, invited_at FROM owner_invitations;
DROP TABLE owner_invitations;
ALTER TABLE owner_invitations_sealed RENAME TO owner_invitations;

CREATE TABLE owner_contacts_sealed (
    subject     TEXT    PRIMARY KEY CHECK (length(subject) BETWEEN 1 AND 2048),
    name        TEXT    CHECK (length(name) <= 2048),
    email       TEXT    CHECK (length(email) <= 2048),
    updated_at  BIGINT  NOT NULL
);
INSERT INTO owner_contacts_sealed (subject, name, email, updated_at)
    SELECT subject, name, email, updated_at FROM owner_contacts;
DROP TABLE owner_contacts;
ALTER TABLE owner_contacts_sealed RENAME TO owner_contacts;

CREATE TABLE label_changes_sealed (
    id           BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    label        TEXT    NOT NULL UNIQUE REFERENCES labels (name) ON DELETE CASCADE,
    proposed     TEXT    NOT NULL,
    base         TEXT    NOT NULL,
    proposed_by  TEXT    NOT NULL CHECK (length(proposed_by) BETWEEN 1 AND 2048),
    proposed_at  BIGINT  NOT NULL
);
INSERT INTO label_changes_sealed (id, label, proposed, base, proposed_by, proposed_at)
    SELECT id, label, proposed, base, proposed_by, proposed_at FROM label_changes;
DROP TABLE label_changes;
ALTER TABLE label_changes_sealed RENAME TO label_changes;

CREATE TABLE group_relabels_sealed (
    id           BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    group_id     BLOB    NOT NULL UNIQUE REFERENCES groups (id) ON DELETE CASCADE,
    from_label   TEXT    NOT NULL CHECK (length(from_label) BETWEEN 1 AND 64),
    to_label     TEXT    NOT NULL REFERENCES labels (name) ON DELETE CASCADE,
    to_policy    TEXT    NOT NULL,
    proposed_by  TEXT    NOT NULL CHECK (length(proposed_by) BETWEEN 1 AND 2048),
    proposed_at  BIGINT  NOT NULL
);
INSERT INTO group_relabels_sealed
    (id, group_id, from_label, to_label, to_policy, proposed_by, proposed_at)
    SELECT id, group_id, from_label, to_label, to_policy, proposed_by, proposed_at
    FROM group_relabels;
DROP TABLE group_relabels;
ALTER TABLE group_relabels_sealed RENAME TO group_relabels;

-- No clear value from now on.
CREATE TRIGGER group_owners_sealed_insert BEFORE INSERT ON group_owners
    WHEN NEW.subject NOT LIKE 'hs1.%'
    BEGIN SELECT RAISE(ABORT, 'group_owners.subject must be sealed'); END;
CREATE TRIGGER group_owners_sealed_update BEFORE UPDATE ON group_owners
    WHEN NEW.subject NOT LIKE 'hs1.%'
    BEGIN SELECT RAISE(ABORT, 'group_owners.subject must be sealed'); END;
CREATE TRIGGER owner_invitations_sealed_insert BEFORE INSERT ON owner_invitations
    WHEN NEW.subject NOT LIKE 'hs1.%' OR NEW.invited_by NOT LIKE 'hs1.%'
    BEGIN SELECT RAISE(ABORT, 'owner_invitations must be sealed'); END;
CREATE TRIGGER owner_invitations_sealed_update BEFORE UPDATE ON owner_invitations
    WHEN NEW.subject NOT LIKE 'hs1.%' OR NEW.invited_by NOT LIKE 'hs1.%'
    BEGIN SELECT RAISE(ABORT, 'owner_invitations must be sealed'); END;
CREATE TRIGGER owner_contacts_sealed_insert BEFORE INSERT ON owner_contacts
    WHEN NEW.subject NOT LIKE 'hs1.%' OR NEW.name NOT LIKE 'hs1.%' OR NEW.email NOT LIKE 'hs1.%'
    BEGIN SELECT RAISE(ABORT, 'owner_contacts must be sealed'); END;
CREATE TRIGGER owner_contacts_sealed_update BEFORE UPDATE ON owner_contacts
    WHEN NEW.subject NOT LIKE 'hs1.%' OR NEW.name NOT LIKE 'hs1.%' OR NEW.email NOT LIKE 'hs1.%'
    BEGIN SELECT RAISE(ABORT, 'owner_contacts must be sealed'); END;
CREATE TRIGGER label_changes_sealed_insert BEFORE INSERT ON label_changes
    WHEN NEW.proposed_by NOT LIKE 'hs1.%'
    BEGIN SELECT RAISE(ABORT, 'label_changes.proposed_by must be sealed'); END;
CREATE TRIGGER group_relabels_sealed_insert BEFORE INSERT ON group_relabels
    WHEN NEW.proposed_by NOT LIKE 'hs1.%'
    BEGIN SELECT RAISE(ABORT, 'group_relabels.proposed_by must be sealed'); END;
CREATE TRIGGER groups_created_by_tagged BEFORE INSERT ON groups
    WHEN NEW.created_by NOT LIKE 'ht1.%'
    BEGIN SELECT RAISE(ABORT, 'groups.created_by must be a tag'); END;

-- The catalog's audit is append-only: rows from before stay as they were; new rows carry the
-- actor and the detail sealed.
CREATE TRIGGER catalog_audit_sealed_insert BEFORE INSERT ON catalog_audit
    WHEN NEW.actor NOT LIKE 'hs1.%' OR NEW.detail NOT LIKE 'hs1.%'
    BEGIN SELECT RAISE(ABORT, 'catalog_audit.actor and detail must be sealed'); END;
