-- CockroachDB only, after the portable 0010_cheaper_lists.sql: its list indexes,
-- hash-sharded as 0004_crdb_operations.sql made those they replace (each takes its writes at
-- the current time, a hot tail without shards). The reason index stays as 0010 made it
-- (CockroachDB cannot hash-shard an index on an expression; only failed rows are in it).
CREATE INDEX IF NOT EXISTS notifications_listed_finished_sharded
    ON notifications (received_at, uuid) USING HASH
    WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_finished_by_channel_sharded
    ON notifications (channel, received_at, uuid) USING HASH
    WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_finished_by_state_sharded
    ON notifications (state, received_at, uuid) USING HASH
    WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_finished_by_channel_state_sharded
    ON notifications (channel, state, received_at, uuid) USING HASH
    WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_unfinished_sharded
    ON notifications (received_at, uuid) USING HASH
    WHERE state IN ('received', 'scheduled', 'forwarded', 'sending');

DROP INDEX IF EXISTS notifications@notifications_listed_finished;
DROP INDEX IF EXISTS notifications@notifications_listed_finished_by_channel;
DROP INDEX IF EXISTS notifications@notifications_listed_finished_by_state;
DROP INDEX IF EXISTS notifications@notifications_listed_finished_by_channel_state;
DROP INDEX IF EXISTS notifications@notifications_listed_unfinished;
DROP INDEX IF EXISTS notifications@notifications_received_at_sharded;
DROP INDEX IF EXISTS notifications@notifications_listed_by_state_sharded;
DROP INDEX IF EXISTS notifications@notifications_listed_by_channel_sharded;
DROP INDEX IF EXISTS notifications@notifications_listed_by_channel_state_sharded;
