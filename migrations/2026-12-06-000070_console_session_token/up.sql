-- The digest of the operator token a console session was opened with: a session lives only while
-- that token is still the operator's (rotating the token ends the sessions it opened). Sessions
-- opened before this column existed have none and are ended.
ALTER TABLE console_sessions ADD COLUMN operator_token_hash bytea;
UPDATE console_sessions SET ended_at = now() WHERE ended_at IS NULL;
