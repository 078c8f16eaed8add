-- Group sizes not in a dump (issue 16): a membership row says of its group only a keyed hash
-- of the group's id under the row's key (`group_ref`), so without the keys a dump cannot say
-- which group has how many members. The reference cannot point at distribution_groups, so
-- the foreign key goes (the tenant deletes a group's rows itself when it deprovisions it).
--
-- Rows written before this migration still hold the clear id in the renamed column; the tenant
-- rewrites them to references when it opens the database (it holds the keys, SQL does not).
ALTER TABLE memberships DROP CONSTRAINT memberships_group_id_fkey;
ALTER TABLE memberships RENAME COLUMN group_id TO group_ref;
