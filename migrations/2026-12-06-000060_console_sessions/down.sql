DROP TABLE console_sign_in_failures;
DROP TABLE console_sessions;
