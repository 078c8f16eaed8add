-- Re-labelling a group (issue 15). A move to a label as strict as the group's or stricter
-- applies at once; a move to a looser label (one admitting guests or AI agents the old one
-- barred, another join policy, a wider circle of senders) waits here for a label-admin's
-- approval, someone other than its proposer. One pending re-labelling per group. `to_policy` is
-- the proposed label's policy (JSON) when proposed, so an approval of a label edited since is
-- refused instead of approving what nobody saw. Rows go when approved, rejected or overtaken;
-- the catalog's audit keeps the record.
CREATE TABLE group_relabels (
    id           BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    group_id     BLOB    NOT NULL UNIQUE REFERENCES groups (id) ON DELETE CASCADE,
    from_label   TEXT    NOT NULL CHECK (length(from_label) BETWEEN 1 AND 64),
    to_label     TEXT    NOT NULL REFERENCES labels (name) ON DELETE CASCADE,
    to_policy    TEXT    NOT NULL,
    proposed_by  TEXT    NOT NULL CHECK (length(proposed_by) BETWEEN 1 AND 256),
    proposed_at  BIGINT  NOT NULL
);
