-- CockroachDB only, after the portable 0003_attempts.sql.

-- Attempts expire like their notifications (0002_crdb_reconciler.sql): 30 days after they
-- were written. A notification's row expires 30 days after it last changed, which is when
-- its last attempts were written, so its history goes with it (earlier attempts of a
-- notification that took days to finish go up to that many days sooner).
ALTER TABLE notification_attempts SET (ttl_expiration_expression = '(recorded_at + INTERVAL ''30 days'')', ttl_job_cron = '@hourly');
