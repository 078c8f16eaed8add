-- Anonymous posting (issue 19, item 4): whether members of a label's groups may post through
-- the group's anonymous alias. Every label written before this reads as off; turning it on is
-- a loosening, so for a label groups use it waits for a second label-admin's approval.
ALTER TABLE labels ADD COLUMN anonymous_posting BOOLEAN NOT NULL DEFAULT 0
    CHECK (anonymous_posting IN (0, 1));
