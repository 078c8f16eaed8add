-- The catalog's audit (issue 6): one row per change to the catalog (groups created, edited,
-- archived; owners added and removed; labels and their policies created, changed, deleted),
-- written in the same transaction as the change. Never membership: control-api holds none.
-- Append-only: the database refuses UPDATE and DELETE (and, on Postgres, TRUNCATE).
CREATE TABLE catalog_audit (
    seq BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT,
    action TEXT NOT NULL,
    group_id TEXT,
    label TEXT,
    detail TEXT NOT NULL,
    request_id TEXT
);

CREATE FUNCTION catalog_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'catalog_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER catalog_audit_no_update_or_delete
    BEFORE UPDATE OR DELETE ON catalog_audit
    FOR EACH ROW EXECUTE FUNCTION catalog_audit_append_only();

CREATE TRIGGER catalog_audit_no_truncate
    BEFORE TRUNCATE ON catalog_audit
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_audit_append_only();

REVOKE UPDATE, DELETE, TRUNCATE ON catalog_audit FROM PUBLIC;
