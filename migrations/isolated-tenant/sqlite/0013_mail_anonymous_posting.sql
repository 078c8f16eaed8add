-- Anonymous posting (issue 19, item 4): whether the group's anonymous alias
-- (`<local>+anon@<domain>`) takes posts from members, from the group's label. Written with the
-- sender policy; a group whose policy was written before this takes no anonymous posts.
ALTER TABLE mail_group_policy ADD COLUMN anonymous_posting BOOLEAN NOT NULL DEFAULT 0
    CHECK (anonymous_posting IN (0, 1));
