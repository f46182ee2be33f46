DROP FUNCTION solopay_summary_keep_days(text, date, date);
DROP TRIGGER summary_days_of_truncated ON summary_buckets;
DROP FUNCTION solopay_summary_forget_all_days();
DROP TRIGGER summary_days_of_updated_after ON summary_buckets;
DROP TRIGGER summary_days_of_updated_before ON summary_buckets;
DROP TRIGGER summary_days_of_deleted ON summary_buckets;
DROP TRIGGER summary_days_of_inserted ON summary_buckets;
DROP FUNCTION solopay_summary_forget_days();
DROP TABLE summary_days;
