-- Who may mail a group, chosen per group (issue 19, item 3). NULL: the label's rule. A value
-- never widens the label's rule: the services refuse a wider one, and the rule that applies is
-- the narrower of the two, so a label tightened later still binds every group under it.
ALTER TABLE groups ADD COLUMN sender_policy TEXT
    CHECK (sender_policy IS NULL OR sender_policy IN ('anyone', 'members', 'owners'));
