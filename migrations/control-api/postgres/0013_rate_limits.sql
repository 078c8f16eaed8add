-- Issue 20 (item 7): rate limits shared by every replica on this database. One row per
-- budget: a key and the time (µs since the epoch) at which the budget is full again (GCRA's
-- theoretical arrival time). Keys are HMACs under a key the replicas share, or fixed names for
-- budgets that belong to no one (the bulk throttle, SCIM); never a subject or a group. Rows
-- whose time has passed are full budgets and are swept.
CREATE TABLE rate_limits (
    key  BYTEA   PRIMARY KEY,
    tat  BIGINT  NOT NULL
);
CREATE INDEX rate_limits_by_time ON rate_limits (tat);
