ALTER TABLE console_sessions DROP COLUMN operator_token_hash;
