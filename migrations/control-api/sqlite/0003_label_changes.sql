-- Controlled label changes (issue 15): a change that loosens a label groups use (admitting
-- guests or AI agents, allowing another join policy, widening who may send) waits here for a
-- second, distinct label-admin's approval. One pending change per label. `proposed` is the
-- change as JSON ({"description", "policy"}); `base` is the label as it was when proposed
-- (JSON), so an approval of a change overtaken by another edit is refused instead of undoing
-- that edit. Rows go when approved, rejected or overtaken; the catalog's audit keeps the record.
CREATE TABLE label_changes (
    id           BLOB    PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    label        TEXT    NOT NULL UNIQUE REFERENCES labels (name) ON DELETE CASCADE,
    proposed     TEXT    NOT NULL,
    base         TEXT    NOT NULL,
    proposed_by  TEXT    NOT NULL CHECK (length(proposed_by) BETWEEN 1 AND 256),
    proposed_at  BIGINT  NOT NULL
);
