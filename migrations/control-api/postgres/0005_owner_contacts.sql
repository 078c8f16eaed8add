-- How owners are shown (issue 15): a group's owners are its public contacts, shown by name or
-- e-mail address rather than by raw IdP subject. Each owner's own token gives them (the `name`
-- and `email` claims) when they create a group, accept an invitation to own one, or edit one
-- they own; nobody else's word is taken. Owners only, never members: this says nothing about
-- membership.
CREATE TABLE owner_contacts (
    subject     TEXT    PRIMARY KEY CHECK (length(subject) BETWEEN 1 AND 256),
    name        TEXT    CHECK (length(name) BETWEEN 1 AND 200),
    email       TEXT    CHECK (length(email) BETWEEN 3 AND 254),
    updated_at  BIGINT  NOT NULL
);
