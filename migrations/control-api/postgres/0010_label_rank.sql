-- Ordered labels (issue 18): how sensitive a label is, 0 to 1000, like a label's priority. A
-- group may guard a resource only when its label ranks at least as high as the resource's.
-- Labels written before ranks existed read as 0; the three default labels, found by name, get
-- the ranks new databases seed them with (General 0 < Confidential 10 < Highly Confidential 20).
-- Raising a rank is a loosening: for a label groups use it waits for a second label-admin.
ALTER TABLE labels ADD COLUMN rank INTEGER NOT NULL DEFAULT 0 CHECK (rank BETWEEN 0 AND 1000);
UPDATE labels SET rank = 10 WHERE name = 'Confidential';
UPDATE labels SET rank = 20 WHERE name = 'Highly Confidential';
