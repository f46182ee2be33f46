-- The operator's side: an append-only record of every operator action, and orders an operator
-- may pay by hand after they were closed.

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    operator     text NOT NULL,          -- the name of the operator token used
    action       text NOT NULL,          -- e.g. 'order.mark_paid', 'payment.assign'
    target_type  text NOT NULL,
    target_id    text NOT NULL,
    note         text,
    details      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_target_idx ON audit_log (target_id, id);

-- Append-only: the database refuses to change or remove a record. The function's body of today
-- lives in src/db/sql/audit.sql (applied at start, after the migrations), which replaces this one.
CREATE FUNCTION solopay_audit_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION solopay_audit_log_is_append_only();

-- A closed order that the operator pays by hand keeps when it was closed.
ALTER TABLE orders DROP CONSTRAINT orders_check2;
ALTER TABLE orders ADD CONSTRAINT orders_closed_at_check
    CHECK (status <> 'closed' OR closed_at IS NOT NULL);

-- Listing and reconciliation.
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_paid_at_idx ON orders (paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX orders_merchant_created_idx ON orders (merchant_id, created_at DESC);
CREATE INDEX payments_created_idx ON payments (created_at DESC, id DESC);
CREATE INDEX payments_payee_amount_idx ON payments (payee_id, amount) WHERE result <> 'matched';
