-- revision: 1
--
-- The audit log's immutability: the function the trigger `audit_log_append_only` (created with
-- the table, in migration 2026-11-25-000004_operator) runs before any change or removal of a
-- record. This file is the only home of its body, applied like every SQL source (see
-- allocation.sql and src/db/sql_sources.rs; bump the revision when you change this file).
--
-- Revision 1: the refusal is SQLSTATE SP004, named in the error's constraint field
-- (solopay_audit_log_append_only), with the message it always had.

CREATE OR REPLACE FUNCTION solopay_audit_log_is_append_only()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'SP004', MESSAGE = 'audit_log is append-only',
        CONSTRAINT = 'solopay_audit_log_append_only', TABLE = TG_TABLE_NAME;
END;
$$;
