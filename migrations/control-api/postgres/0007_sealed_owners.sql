-- Owners sealed at rest (issue 16): every column that names a person now holds a value sealed
-- under control-api's key (`hs1.` + base64url, about 400 characters) or, for a group's creator,
-- a keyed tag (`ht1.` + 64 hex digits), so a dump, a WAL archive or a file-level copy names no
-- owner. The old length checks (written for clear subjects of at most 256 characters) go; the
-- new checks refuse a clear value in any row written from now on. They are NOT VALID: rows
-- written before this migration are sealed by control-api when it starts (src/seal.rs), and
-- those updates are checked like any other write.
ALTER TABLE group_owners DROP CONSTRAINT group_owners_subject_check;
ALTER TABLE group_owners ADD CONSTRAINT group_owners_subject_sealed
    CHECK (subject LIKE 'hs1.%' AND length(subject) <= 2048) NOT VALID;

ALTER TABLE owner_invitations DROP CONSTRAINT owner_invitations_subject_check;
ALTER TABLE owner_invitations DROP CONSTRAINT owner_invitations_invited_by_check;
ALTER TABLE owner_invitations ADD CONSTRAINT owner_invitations_sealed
    CHECK (subject LIKE 'hs1.%' AND invited_by LIKE 'hs1.%'
           AND length(subject) <= 2048 AND length(invited_by) <= 2048) NOT VALID;

ALTER TABLE owner_contacts DROP CONSTRAINT owner_contacts_subject_check;
ALTER TABLE owner_contacts DROP CONSTRAINT owner_contacts_name_check;
ALTER TABLE owner_contacts DROP CONSTRAINT owner_contacts_email_check;
ALTER TABLE owner_contacts ADD CONSTRAINT owner_contacts_sealed
    CHECK (subject LIKE 'hs1.%' AND (name IS NULL OR name LIKE 'hs1.%')
           AND (email IS NULL OR email LIKE 'hs1.%')
           AND length(subject) <= 2048) NOT VALID;

ALTER TABLE label_changes DROP CONSTRAINT label_changes_proposed_by_check;
ALTER TABLE label_changes ADD CONSTRAINT label_changes_proposed_by_sealed
    CHECK (proposed_by LIKE 'hs1.%' AND length(proposed_by) <= 2048) NOT VALID;

ALTER TABLE group_relabels DROP CONSTRAINT group_relabels_proposed_by_check;
ALTER TABLE group_relabels ADD CONSTRAINT group_relabels_proposed_by_sealed
    CHECK (proposed_by LIKE 'hs1.%' AND length(proposed_by) <= 2048) NOT VALID;

ALTER TABLE groups ADD CONSTRAINT groups_created_by_tagged
    CHECK (created_by LIKE 'ht1.%') NOT VALID;

-- The catalog's audit is append-only: rows from before stay as they were; new rows carry the
-- actor and the detail sealed.
ALTER TABLE catalog_audit ADD CONSTRAINT catalog_audit_sealed
    CHECK ((actor IS NULL OR actor LIKE 'hs1.%') AND detail LIKE 'hs1.%') NOT VALID;
