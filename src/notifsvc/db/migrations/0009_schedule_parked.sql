-- The scheduler's delay tiers (notifsvc/schedule.py, notifsvc/scheduler.py): what the
-- database keeps for them. Runs unchanged on PostgreSQL and CockroachDB; each statement is
-- applied on its own and is idempotent. Needs 0008 (send_at, state 'scheduled').
--
-- The lease that elects one parked reader among the router replicas: one row per name
-- ('parked-reader'), taken with a conditional upsert when it ran out or is already the
-- taker's, renewed once per bucket.
CREATE TABLE IF NOT EXISTS schedule_leases (
    name        TEXT        PRIMARY KEY,
    owner       TEXT,
    lease_until TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The parked reader's range scan: the scheduled rows by due time. Only 'scheduled' rows are
-- in it (a handful of the table), so it stays small; the reader reads it once per bucket
-- (NOTIFSVC_SCHEDULE_BUCKET_SECONDS), never as a polling loop. Not hash-sharded on
-- CockroachDB: rows enter it at their send_at, spread over the horizon, not at its tail.
CREATE INDEX IF NOT EXISTS notifications_scheduled
    ON notifications (send_at, uuid) WHERE state = 'scheduled';
