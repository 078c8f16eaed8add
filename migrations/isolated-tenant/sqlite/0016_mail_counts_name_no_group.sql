-- Issue 20 review: a copy of the database could count a group from its mail. A stored message
-- kept its group's id in clear beside its deliveries, whose rows hold their recipient counts
-- (and bounce tags, one per recipient) for the retention of delivered and dead rows: the sum
-- over one message was the group's size. Nothing reads a message's group after it is queued,
-- so the link goes: scrubbed first (so the row's new version holds no id), then dropped.
-- Operators' counts now name messages only (tenant-api `MailCounts`).
UPDATE mail_messages SET group_id = zeroblob(16);
ALTER TABLE mail_messages DROP COLUMN group_id;
