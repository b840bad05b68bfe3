-- CockroachDB only, after the portable 0012_hot_updates.sql: its list indexes and the index
-- of rows in flight, hash-sharded as 0006_crdb_lists.sql made those they replace (each takes
-- its writes at the current time, a hot tail without shards). The reason index and the
-- scheduled rows' index stay as 0012 made them, as 0006 and 0005 left theirs. The
-- reconciler reads the index of rows in flight now, so its own index goes too.
CREATE INDEX IF NOT EXISTS notifications_listed_resting_by_state_sharded
    ON notifications (resting_state, received_at, uuid) USING HASH
    WHERE resting_state IN ('scheduled', 'sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_resting_by_channel_state_sharded
    ON notifications (channel, resting_state, received_at, uuid) USING HASH
    WHERE resting_state IN ('scheduled', 'sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_in_flight_sharded
    ON notifications (received_at, uuid) USING HASH WHERE resting_state IS NULL;

DROP INDEX IF EXISTS notifications@notifications_listed_resting_by_state;
DROP INDEX IF EXISTS notifications@notifications_listed_resting_by_channel_state;
DROP INDEX IF EXISTS notifications@notifications_listed_in_flight;
DROP INDEX IF EXISTS notifications@notifications_listed_finished_by_state_sharded;
DROP INDEX IF EXISTS notifications@notifications_listed_finished_by_channel_state_sharded;
DROP INDEX IF EXISTS notifications@notifications_listed_unfinished_sharded;
DROP INDEX IF EXISTS notifications@notifications_unfinished_sharded_v2;
