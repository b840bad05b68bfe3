-- The reconciler (notifsvc/reconciler.py). Runs unchanged on PostgreSQL and CockroachDB;
-- each statement is applied on its own and is idempotent.

-- How many times a row was re-driven, and when last (NULL: never).
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS redriven INT NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS redriven_at TIMESTAMPTZ;

-- Unfinished rows by the time they last moved: holds only rows not yet sent or failed (the
-- in-flight and the stalled ones, a small fraction of the table), in the order the
-- reconciler pages through them (keyset on updated_at, uuid). On CockroachDB the next
-- migration replaces it with a hash-sharded one.
CREATE INDEX IF NOT EXISTS notifications_unfinished
    ON notifications (updated_at, uuid) WHERE state IN ('received', 'forwarded');

-- Rows re-driven recently, for `notifsvc status` (only re-driven rows are in it).
CREATE INDEX IF NOT EXISTS notifications_redriven_at
    ON notifications (redriven_at) WHERE redriven_at IS NOT NULL;
