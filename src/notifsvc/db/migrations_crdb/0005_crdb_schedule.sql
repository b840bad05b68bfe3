-- CockroachDB only, after the portable 0008_schedule.sql.

-- Retention never deletes an unfinished row (received, scheduled, forwarded, sending): a
-- scheduled one may wait up to NOTIFSVC_SCHEDULE_HORIZON_SECONDS for its send_at. Sent,
-- failed, canceled and expired rows expire 30 days after they last changed (an expression
-- that is NULL never expires).
ALTER TABLE notifications SET (ttl_expiration_expression = '(CASE WHEN state IN (''sent'', ''failed'', ''canceled'', ''expired'') THEN updated_at + INTERVAL ''30 days'' END)', ttl_job_cron = '@hourly');
