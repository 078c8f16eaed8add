-- No per-person list of groups (issue 16). An identity row used to carry its groups, sealed,
-- and every membership write rewrote it in the same transaction as the membership row, so
-- someone who diffs the WAL transaction by transaction could tie one identity's memberships in
-- different groups together. The tenant now finds a person's groups by probing the membership
-- tags of every group (a keyed hash of group and identity), and a membership write touches no
-- per-person row. Postgres drops the column without rewriting the table: the old sealed lists
-- (ciphertext) stay in the tuples until each row is next written or the table is rewritten
-- (`VACUUM FULL identities`, see docs/operations.md).
ALTER TABLE identities DROP COLUMN sealed_groups;
