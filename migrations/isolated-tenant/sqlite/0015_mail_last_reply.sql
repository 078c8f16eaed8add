-- Outbound mail through a real relay (issue 20, item 1): each delivery keeps the relay's last
-- reply code (`550 5.7.1`, `451`) or what failed before any reply (`tls`, `connect`), so the
-- operators' dead-letter list says why a delivery was given up on. A code or a cause word
-- only, never a reply's text: relays put addresses there.
ALTER TABLE mail_deliveries ADD COLUMN last_reply TEXT CHECK (length(last_reply) <= 32);
