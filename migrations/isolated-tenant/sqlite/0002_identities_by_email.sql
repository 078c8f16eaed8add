-- Identities can be found by address as well as by subject (issue 3).
--
-- An owner may add someone by address before the tenant has ever seen them with a token, so an
-- identity may now have no subject yet: subject_tag becomes nullable, and email_tag (a keyed
-- hash of the lowercased address, under its own subkey) finds it. The first time the person is
-- seen with a token carrying both, the subject is bound to the same identity. Every identity
-- can still be found one way or another: at least one tag is set.
--
-- SQLite cannot drop a NOT NULL in place, so the table is rebuilt (nothing references it; the
-- migration runs in one transaction). Rows written before keep a NULL email_tag (tags need the
-- tenant's keys, which SQL does not have); `hush tenant reseal` fills them in, and so does the
-- person's next write.
CREATE TABLE identities_v2 (
    id               BLOB     PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    subject_tag      BLOB     UNIQUE CHECK (length(subject_tag) = 32),
    sealed_profile   BLOB     NOT NULL,
    sealed_groups    BLOB     NOT NULL,
    key_id           TEXT     NOT NULL CHECK (length(key_id) BETWEEN 1 AND 32),
    sign_in_enabled  BOOLEAN  NOT NULL DEFAULT FALSE CHECK (sign_in_enabled = 0),
    disabled         BOOLEAN  NOT NULL DEFAULT FALSE CHECK (disabled IN (0, 1)),
    -- Last, as on Postgres (where it is added to the existing table).
    email_tag        BLOB     UNIQUE CHECK (length(email_tag) = 32),
    CHECK (subject_tag IS NOT NULL OR email_tag IS NOT NULL)
) WITHOUT ROWID;

INSERT INTO identities_v2 (id, subject_tag, sealed_profile, sealed_groups, key_id, sign_in_enabled, disabled)
    SELECT id, subject_tag, sealed_profile, sealed_groups, key_id, sign_in_enabled, disabled
    FROM identities;

DROP TABLE identities;
ALTER TABLE identities_v2 RENAME TO identities;
