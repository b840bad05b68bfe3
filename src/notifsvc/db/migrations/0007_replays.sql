-- Replay jobs (notifsvc/replays.py, notifsvc/db/replays.py): POST /replays stores a job, a
-- router replica holding its lease pages through the matching failed notifications and
-- requeues them. Runs unchanged on PostgreSQL and CockroachDB; each statement is applied
-- on its own and is idempotent.
--
-- The filter is kept as columns (NULL: not filtered on); the only replayable state is
-- 'failed'. The cursor is the last row done, in the order the job pages through the rows
-- (received_at, uuid) newest first (NULL: not started). The lease says which router works
-- on it and until when; a job whose lease ran out is taken over by any router, and goes on
-- from its cursor.
CREATE TABLE IF NOT EXISTS replays (
    id                 TEXT        PRIMARY KEY,
    channel            TEXT,
    since              TIMESTAMPTZ,
    until              TIMESTAMPTZ,
    reason             TEXT,
    state              TEXT        NOT NULL DEFAULT 'running'
                       CHECK (state IN ('running', 'done')),
    matched            INT8        NOT NULL DEFAULT 0,
    requeued           INT8        NOT NULL DEFAULT 0,
    skipped            INT8        NOT NULL DEFAULT 0,
    cursor_received_at TIMESTAMPTZ,
    cursor_uuid        UUID,
    lease_owner        TEXT,
    lease_until        TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at        TIMESTAMPTZ
);

-- Neither index of this table is hash-sharded on CockroachDB although a timestamp leads
-- them: a job is written once per operator request and then once per page of its own, far
-- from the write rate that makes an append-only tail hot.

-- The jobs a router may take: only running ones (a handful at most).
CREATE INDEX IF NOT EXISTS replays_running ON replays (created_at) WHERE state = 'running';

-- GET /replays: the newest jobs first.
CREATE INDEX IF NOT EXISTS replays_created_at ON replays (created_at, id);

-- The job that last requeued a notification (NULL: never replayed). A job requeues a row
-- at most once, and a job taken over re-sends the rows it had requeued after its cursor
-- (the page whose messages a killed router may not have finished producing).
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS replay_id TEXT;

-- The attempts a row had when an operator last requeued it (a replay job or
-- POST /notification/{uuid}/retry; NULL: never): those do not count against the attempt
-- budget of the new run. Its forwarded_at is the time of that requeue. The reconciler
-- re-drives such a row as the requeue did (low lane, same budget), not as a fresh one.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS replayed_from INT;

-- A job's own rows in its paging order: only replayed rows are in it. Serves the re-send
-- of a taken-over job's unfinished page (one bounded range scan, read backwards). A job
-- writes into its own prefix at its pace (NOTIFSVC_REPLAY_RATE), so on CockroachDB it needs
-- no hash shards either.
CREATE INDEX IF NOT EXISTS notifications_replay
    ON notifications (replay_id, received_at, uuid) WHERE replay_id IS NOT NULL;
