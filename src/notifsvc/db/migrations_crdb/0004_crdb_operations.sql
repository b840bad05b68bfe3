-- CockroachDB only, after the portable 0006_operations.sql.

-- The reconciler's index with `sending` rows, hash-sharded like the one it replaces
-- (0002_crdb_reconciler.sql).
CREATE INDEX IF NOT EXISTS notifications_unfinished_sharded_v2
    ON notifications (updated_at) USING HASH WHERE state IN ('received', 'forwarded', 'sending');
DROP INDEX IF EXISTS notifications@notifications_unfinished_sharded;
DROP INDEX IF EXISTS notifications@notifications_unfinished_v2;

-- GET /notifications. Every notification enters these indexes at the current time (and, in
-- those holding the state, again at each change of state), so each of them has a hot tail:
-- the timestamp-leading one a single one, and the state- and channel-leading ones one per
-- state or channel, a handful of ranges taking every write. Load-based splitting cannot
-- spread an append-only tail, so all of them are hash-sharded: the shard is computed over
-- every column, the rows of one state or channel spread over the buckets, and the optimizer
-- reads each bucket's range (with the same keyset bound) and merges them for the list's
-- ORDER BY ... LIMIT.
--
-- No filter: notifications_received_at_sharded of 0001_crdb_tuning.sql, (received_at) USING
-- HASH, already serves it (a secondary index's key ends with the primary key, uuid).
DROP INDEX IF EXISTS notifications@notifications_listed;
CREATE INDEX IF NOT EXISTS notifications_listed_by_state_sharded
    ON notifications (state, received_at, uuid) USING HASH;
DROP INDEX IF EXISTS notifications@notifications_listed_by_state;
CREATE INDEX IF NOT EXISTS notifications_listed_by_channel_sharded
    ON notifications (channel, received_at, uuid) USING HASH;
DROP INDEX IF EXISTS notifications@notifications_listed_by_channel;
CREATE INDEX IF NOT EXISTS notifications_listed_by_channel_state_sharded
    ON notifications (channel, state, received_at, uuid) USING HASH;
DROP INDEX IF EXISTS notifications@notifications_listed_by_channel_state;

-- notifications_listed_by_reason stays as 0006 made it: CockroachDB cannot hash-shard an
-- index on an expression, and this one needs no shards: only failed rows lead with their
-- reason (a tail as hot as failures are frequent); every other row leads with its uuid,
-- spread like the primary key.

-- Retention never deletes an unfinished row (received, forwarded, sending): sent, failed and
-- canceled rows expire 30 days after they last changed (an expression that is NULL never
-- expires).
ALTER TABLE notifications SET (ttl_expiration_expression = '(CASE WHEN state IN (''sent'', ''failed'', ''canceled'') THEN updated_at + INTERVAL ''30 days'' END)', ttl_job_cron = '@hourly');
