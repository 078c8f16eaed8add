-- The catalog's audit (issue 6): one row per change to the catalog (groups created, edited,
-- archived; owners added and removed; labels and their policies created, changed, deleted),
-- written in the same transaction as the change. Never membership: control-api holds none.
-- Append-only: the database refuses UPDATE and DELETE (and, on Postgres, TRUNCATE).
CREATE TABLE catalog_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT,
    action TEXT NOT NULL,
    group_id TEXT,
    label TEXT,
    detail TEXT NOT NULL,
    request_id TEXT
);

CREATE TRIGGER catalog_audit_no_update
    BEFORE UPDATE ON catalog_audit
    BEGIN SELECT RAISE(ABORT, 'catalog_audit is append-only: UPDATE refused'); END;

CREATE TRIGGER catalog_audit_no_delete
    BEFORE DELETE ON catalog_audit
    BEGIN SELECT RAISE(ABORT, 'catalog_audit is append-only: DELETE refused'); END;
