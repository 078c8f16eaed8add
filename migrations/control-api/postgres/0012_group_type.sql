-- Group types (issue 18, item 1): a group is 'mail' (a distribution group with a contact
-- address) or 'security' (an access group: no address, no mail). Chosen at creation and never
-- changed; every group written before this is a mail group.
--
-- contact_address stays NOT NULL and UNIQUE: a security group holds a reserved address,
-- '<group id>@security.invalid' (the .invalid top-level domain can never be routed, RFC 2606),
-- that no read of the catalog ever returns; the catalog reads a security group's address as
-- absent, and the tenant keeps it only as the key of a group its mail listener never matches.
ALTER TABLE groups ADD COLUMN group_type TEXT NOT NULL DEFAULT 'mail'
    CHECK (group_type IN ('mail', 'security'));
