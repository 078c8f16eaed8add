-- Group types (issue 18, item 1): 'mail' or 'security', as the catalog provisioned the group.
-- A security group's address is a reserved, never-routable one ('<group id>@security.invalid');
-- the mail listener matches only 'mail' groups, so no message ever reaches a security group's
-- members and its address is answered like an address no group has. Every group provisioned
-- before this is a mail group.
ALTER TABLE distribution_groups ADD COLUMN group_type TEXT NOT NULL DEFAULT 'mail'
    CHECK (group_type IN ('mail', 'security'));
