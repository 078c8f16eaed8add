-- Bounces bound to deliveries (issue 16): each delivery keeps, for every recipient it went to,
-- a keyed tag of (its bounce token, the address), never the address. A DSN to a delivery's
-- bounce address counts a hard bounce for an address only when that address's tag is there,
-- and then the tag is removed, so a replayed DSN counts nothing. Tags are bound to the token:
-- the same person's tags in two deliveries (of two groups) do not match.
ALTER TABLE mail_deliveries ADD COLUMN recipient_tags BLOB NOT NULL DEFAULT X'';
-- When a DSN last counted a hard bounce for the address: DSNs count at most one a day per
-- address, so marking an address bad takes days of bounces, not three forged messages.
ALTER TABLE mail_bad_addresses ADD COLUMN last_counted_ms BIGINT NOT NULL DEFAULT 0;
