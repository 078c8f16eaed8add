-- Identities can be found by address as well as by subject (issue 3).
--
-- An owner may add someone by address before the tenant has ever seen them with a token, so an
-- identity may now have no subject yet: subject_tag becomes nullable, and email_tag (a keyed
-- hash of the lowercased address, under its own subkey) finds it. The first time the person is
-- seen with a token carrying both, the subject is bound to the same identity. Every identity
-- can still be found one way or another: at least one tag is set.
--
-- Rows written before this migration keep a NULL email_tag (tags need the tenant's keys, which
-- SQL does not have); `hush tenant reseal` fills them in, and so does the person's next write.
ALTER TABLE identities ALTER COLUMN subject_tag DROP NOT NULL;
ALTER TABLE identities ADD COLUMN email_tag BYTEA UNIQUE CHECK (length(email_tag) = 32);
ALTER TABLE identities ADD CONSTRAINT identities_findable
    CHECK (subject_tag IS NOT NULL OR email_tag IS NOT NULL);
