-- Directory sync (issue 15): the users the company's IdP provisions over SCIM 2.0, as the IdP
-- sent them (sealed, bound to their id). Found by keyed hashes of userName (lowercased) and
-- externalId, under a subkey of their own, so no row links to an identity or a membership
-- without the keys. Each user also has an identity (sign-in disabled) whose kind is the one the
-- directory says; that is where groups and memberships live, as for everyone else.
CREATE TABLE directory_users (
    id                BLOB   PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    user_name_tag     BLOB  NOT NULL UNIQUE CHECK (length(user_name_tag) = 32),
    external_id_tag   BLOB  UNIQUE CHECK (length(external_id_tag) = 32),
    sealed_user       BLOB  NOT NULL,
    key_id            TEXT   NOT NULL CHECK (length(key_id) BETWEEN 1 AND 32)
);
