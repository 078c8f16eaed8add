-- Labels govern ownership (issue 15). Under a label that bars guests or AI agents, someone an
-- owner names as a co-owner is invited, not made owner: they become one only when they accept
-- with their own token, whose kind the label must admit. So nobody is made owner on anyone
-- else's word about their kind, and the answer to an owner naming someone says nothing of what
-- Hush knows of that person. Owners are public contacts; so are their invitations.
CREATE TABLE owner_invitations (
    group_id    BLOB    NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    subject     TEXT    NOT NULL CHECK (length(subject) BETWEEN 1 AND 256),
    invited_by  TEXT    NOT NULL CHECK (length(invited_by) BETWEEN 1 AND 256),
    invited_at  BIGINT  NOT NULL,
    PRIMARY KEY (group_id, subject)
);
