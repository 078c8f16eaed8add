-- Observability (issue 20, item 5): when each delivery was first queued, so readiness and
-- /metrics can say how old the oldest waiting delivery is (`hush_mail_queue_oldest_age_seconds`).
-- A time only: nothing about the group or its recipients. Rows queued before this migration
-- have none; their next attempt time stands in for it.
ALTER TABLE mail_deliveries ADD COLUMN queued_at_ms BIGINT;
