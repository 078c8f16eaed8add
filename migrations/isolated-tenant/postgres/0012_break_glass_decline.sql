-- Break-glass requests can be declined by a privacy officer (issue 19: the officers' screen),
-- and officers see who asked: the requester's subject and address, sealed like the person asked
-- about and the justification (key_id, bound to the request's id). A decline may carry a reason
-- for the auditor, sealed the same way.
ALTER TABLE break_glass_requests DROP CONSTRAINT break_glass_requests_state_check;
ALTER TABLE break_glass_requests ADD CONSTRAINT break_glass_requests_state_check
    CHECK (state IN ('pending', 'approved', 'redeemed', 'declined'));
ALTER TABLE break_glass_requests ADD COLUMN sealed_requester BYTEA;
ALTER TABLE break_glass_requests ADD COLUMN sealed_decline BYTEA;
ALTER TABLE break_glass_requests ADD COLUMN decided_ms BIGINT;
CREATE INDEX break_glass_requests_by_state ON break_glass_requests (state, expires_ms);
