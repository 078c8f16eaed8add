-- No per-person list of groups (issue 16). An identity row used to carry its groups, sealed,
-- and every membership write rewrote it in the same transaction as the membership row, so
-- someone who diffs the write-ahead log transaction by transaction could tie one identity's
-- memberships in different groups together. The tenant now finds a person's groups by probing
-- the membership tags of every group (a keyed hash of group and identity), and a membership
-- write touches no per-person row. DROP COLUMN rewrites the table; with secure_delete the old
-- sealed lists do not stay in freed pages.
ALTER TABLE identities DROP COLUMN sealed_groups;
