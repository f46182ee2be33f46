DROP TABLE sql_sources;
DROP INDEX notifications_same_payment_idx;
ALTER TABLE notifications DROP COLUMN same_payment_key;
DROP INDEX payments_amount_hold_idx;
ALTER TABLE payments DROP COLUMN holds_amount_until;
DROP INDEX payments_duplicate_of_idx;
ALTER TABLE payments
    DROP CONSTRAINT payments_duplicate_of_check,
    DROP COLUMN amounts_read,
    DROP COLUMN duplicate_of;
UPDATE payments SET result = 'ambiguous' WHERE result = 'contradicted';
UPDATE payments SET result = 'unmatched' WHERE result = 'duplicate';
ALTER TABLE payments DROP CONSTRAINT payments_result_check;
ALTER TABLE payments ADD CONSTRAINT payments_result_check
    CHECK (result IN ('matched', 'unmatched', 'unparsed', 'untrusted', 'ambiguous'));
