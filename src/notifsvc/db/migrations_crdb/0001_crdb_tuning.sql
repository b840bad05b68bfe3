-- CockroachDB only: applied after the portable migrations when the server is CockroachDB.
-- A hash-sharded index spreads the monotonically increasing timestamps over ranges
-- instead of making one range the hot spot.
CREATE INDEX IF NOT EXISTS notifications_received_at_sharded
    ON notifications (received_at) USING HASH;

-- Delivered and failed notifications expire after 30 days (row-level TTL).
ALTER TABLE notifications SET (ttl_expiration_expression = '(updated_at + INTERVAL ''30 days'')', ttl_job_cron = '@hourly');
