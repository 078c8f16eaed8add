-- The tenant knows each group's entry rule (issue 15): the name of its label and whether the
-- label admits guests and AI agents. With it the tenant can act the moment a person's kind
-- becomes known or changes, and the moment a label is tightened: every membership the rule now
-- bars ends at once, in the same transaction as the change. Labels are catalog facts, not
-- personal data. NULL until the catalog tells the tenant (groups provisioned before this
-- version learn theirs from their next provisioning, label change or add).
ALTER TABLE distribution_groups ADD COLUMN label_name TEXT CHECK (length(label_name) BETWEEN 1 AND 64);
ALTER TABLE distribution_groups ADD COLUMN guests_allowed BOOLEAN;
ALTER TABLE distribution_groups ADD COLUMN agents_allowed BOOLEAN;
ALTER TABLE distribution_groups ADD CONSTRAINT distribution_groups_rule_whole
    CHECK ((label_name IS NULL) = (guests_allowed IS NULL) AND (label_name IS NULL) = (agents_allowed IS NULL));
CREATE INDEX distribution_groups_by_label ON distribution_groups (label_name);
