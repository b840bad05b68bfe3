-- CockroachDB only, after the portable 0011_fewer_list_indexes.sql: the hash-sharded
-- versions (0006_crdb_lists.sql) of the two indexes it drops.
DROP INDEX IF EXISTS notifications@notifications_listed_finished_sharded;
DROP INDEX IF EXISTS notifications@notifications_listed_finished_by_channel_sharded;
