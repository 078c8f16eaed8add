-- Group sizes not in a dump (issue 16): a membership row says of its group only a keyed hash
-- of the group's id under the row's key (`group_ref`), so without the keys a dump cannot say
-- which group has how many members. The reference cannot point at distribution_groups, so
-- the foreign key goes (the tenant deletes a group's rows itself when it deprovisions it).
--
-- Rows written before this migration still hold the clear id in the renamed column; the tenant
-- rewrites them to references when it opens the database (it holds the keys, SQL does not).
CREATE TABLE memberships_referenced (
    member_tag       BLOB  PRIMARY KEY NOT NULL CHECK (length(member_tag) = 32),
    group_ref        BLOB  NOT NULL CHECK (length(group_ref) = 16),
    sealed_identity  BLOB  NOT NULL,
    key_id           TEXT  NOT NULL CHECK (length(key_id) BETWEEN 1 AND 32)
) WITHOUT ROWID;
INSERT INTO memberships_referenced (member_tag, group_ref, sealed_identity, key_id)
    SELECT member_tag, group_id, sealed_identity, key_id FROM memberships;
DROP TABLE memberships;
ALTER TABLE memberships_referenced RENAME TO memberships;
-- Counting and deprovisioning a group.
CREATE INDEX memberships_by_group ON memberships (group_ref);
