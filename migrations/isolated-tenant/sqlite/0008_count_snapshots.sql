-- Counts that writes cannot calibrate (issue 16, INV-4): an owner sees a group's member count
-- as a bucket taken from this snapshot, which is refreshed at the first read after a random
-- moment one to two days after the last refresh. Adding and removing people around a bucket
-- edge changes nothing an owner can read until then. Only the bucket (0: <10 … 4: 1000+) is
-- kept, never a number.
CREATE TABLE count_snapshots (
    group_id          BLOB      PRIMARY KEY NOT NULL
                                REFERENCES distribution_groups (group_id) ON DELETE CASCADE
                                CHECK (length(group_id) = 16),
    bucket            BIGINT    NOT NULL CHECK (bucket BETWEEN 0 AND 4),
    refresh_after_ms  BIGINT    NOT NULL
) WITHOUT ROWID;
