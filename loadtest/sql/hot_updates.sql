-- For `make bench-store` (loadtest/bench_store.py --variant): an index set in which no
-- index reads `state` or `updated_at`, so that the forward and the claim may be HOT
-- updates (no new index entries). They need room on the page: add a fillfactor file
-- (--variant loadtest/sql/hot_updates.sql+loadtest/sql/fillfactor_50.sql).
-- `sent_at` (set only at the outcome) stands in for a finished-state column that the
-- schema does not have; the one unfinished index, on received_at, would also serve the
-- reconciler. An experiment, not a migration (see docs/performance.md, sixth session).
DROP INDEX IF EXISTS notifications_unfinished_v2;
DROP INDEX IF EXISTS notifications_listed_unfinished;
DROP INDEX IF EXISTS notifications_listed_finished_by_state;
DROP INDEX IF EXISTS notifications_listed_finished_by_channel_state;
DROP INDEX IF EXISTS notifications_listed_failed_by_reason;
DROP INDEX IF EXISTS notifications_scheduled;
CREATE INDEX hot_unfinished ON notifications (received_at, uuid) WHERE sent_at IS NULL;
CREATE INDEX hot_finished ON notifications (sent_at, received_at, uuid) WHERE sent_at IS NOT NULL;
CREATE INDEX hot_finished_by_channel ON notifications (channel, sent_at, received_at, uuid) WHERE sent_at IS NOT NULL;
