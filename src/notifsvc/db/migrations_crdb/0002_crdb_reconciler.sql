-- CockroachDB only, after the portable 0002_reconciler.sql.

-- The reconciler's index, hash-sharded: every notification enters it, moves in it and
-- leaves it at the current time, which would make one range the hot spot. The optimizer
-- reads the buckets in order and merges them for the reconciler's ORDER BY ... LIMIT.
CREATE INDEX IF NOT EXISTS notifications_unfinished_sharded
    ON notifications (updated_at) USING HASH WHERE state IN ('received', 'forwarded');
DROP INDEX IF EXISTS notifications@notifications_unfinished;

-- Retention never deletes an unfinished row: only sent and failed rows expire, 30 days after
-- they last changed (an expression that is NULL never expires). Unfinished rows are re-driven
-- by the reconciler, or failed with reason expired_unfinished, and expire after that.
ALTER TABLE notifications SET (ttl_expiration_expression = '(CASE WHEN state IN (''sent'', ''failed'') THEN updated_at + INTERVAL ''30 days'' END)', ttl_job_cron = '@hourly');
