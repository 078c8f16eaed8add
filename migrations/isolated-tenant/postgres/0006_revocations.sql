-- Offboarding bites (issue 15): every token of an offboarded person issued before the
-- offboarding is refused by every service. One row per offboarded subject, found by the keyed
-- hash of the subject (as identities are), holding when the offboarding happened: tokens issued
-- before then are void. Nothing else: no group, no address. A later token (the person
-- returns) is accepted.
CREATE TABLE revocations (
    subject_tag    BYTEA    PRIMARY KEY CHECK (length(subject_tag) = 32),
    not_before_ms  BIGINT  NOT NULL
);
