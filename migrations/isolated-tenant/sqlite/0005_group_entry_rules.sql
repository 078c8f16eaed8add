-- The tenant knows each group's entry rule (issue 15): the name of its label and whether the
-- label admits guests and AI agents. With it the tenant can act the moment a person's kind
-- becomes known or changes, and the moment a label is tightened: every membership the rule now
-- bars ends at once, in the same transaction as the change. Labels are catalog facts, not
-- personal data. NULL until the catalog tells the tenant (groups provisioned before this
-- version learn theirs from their next provisioning, label change or add).
--
-- SQLite adds a column with a CHECK of that column only; the three are set together by the
-- one statement that writes them.
ALTER TABLE distribution_groups ADD COLUMN label_name TEXT CHECK (length(label_name) BETWEEN 1 AND 64);
ALTER TABLE distribution_groups ADD COLUMN guests_allowed BOOLEAN CHECK (guests_allowed IN (0, 1));
ALTER TABLE distribution_groups ADD COLUMN agents_allowed BOOLEAN CHECK (agents_allowed IN (0, 1));
CREATE INDEX distribution_groups_by_label ON distribution_groups (label_name);
