-- Operations (notifsvc/api/operations.py): the states `sending` and `canceled`, and the
-- indexes of GET /notifications. Runs unchanged on PostgreSQL and CockroachDB; each
-- statement is applied on its own and is idempotent (a pair "drop if exists, add" is, run
-- again from either statement). On CockroachDB, 0004_crdb_operations.sql replaces the
-- indexes with hash-sharded ones.

-- When an operator canceled it (DELETE /notification/{uuid}); NULL: never.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS canceled_at TIMESTAMPTZ;

-- The states (notifsvc.model.State). The inline CHECK of 0001 is named
-- notifications_state_check by PostgreSQL and check_state by CockroachDB.
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_state_check;
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS check_state;
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_state_valid;
ALTER TABLE notifications ADD CONSTRAINT notifications_state_valid
    CHECK (state IN ('received', 'forwarded', 'sending', 'sent', 'failed', 'canceled'));

-- The reconciler's index (0002) now holds `sending` rows too: a notificator that died while
-- sending leaves its rows there, and they are re-driven like any other unfinished row.
CREATE INDEX IF NOT EXISTS notifications_unfinished_v2
    ON notifications (updated_at, uuid) WHERE state IN ('received', 'forwarded', 'sending');
DROP INDEX IF EXISTS notifications_unfinished;

-- GET /notifications (notifsvc/db/queries.py): newest first by (received_at, uuid), a
-- keyset page after a cursor, optionally on one state, one channel, one failure reason and
-- a received_at range. Each index below serves one shape as a single backward range scan
-- that stops after LIMIT rows (no sort, and nothing read before the cursor):
--   no filter, since/until ...................... (received_at, uuid)
--   state ....................................... (state, received_at, uuid)
--   channel ..................................... (channel, received_at, uuid)
--   channel and state ........................... (channel, state, received_at, uuid)
--   reason ...................................... (<reason key>, received_at, uuid)
-- priority (three values), and a second dimension next to the reason, are residual filters
-- on the scan of the shape they come with: a rare value reads further into that range
-- before a page is full, or (when PostgreSQL expects fewer matches than a page) reads the
-- range whole and sorts it; never the table. The replay jobs page through failed rows in
-- the same order, with the state and channel-state indexes.
CREATE INDEX IF NOT EXISTS notifications_listed ON notifications (received_at, uuid);
CREATE INDEX IF NOT EXISTS notifications_listed_by_state
    ON notifications (state, received_at, uuid);
CREATE INDEX IF NOT EXISTS notifications_listed_by_channel
    ON notifications (channel, received_at, uuid);
CREATE INDEX IF NOT EXISTS notifications_listed_by_channel_state
    ON notifications (channel, state, received_at, uuid);

-- The reason key (notifsvc.db.queries.REASON_KEY, the same text): a failed row's reason
-- code, the word its last_error starts with (notifsvc.model.reason_of); any other row's
-- uuid, which no reason equals. A failed row has a reason only while it is failed, so the
-- key implies the state and the list asks for it alone: PostgreSQL then estimates it from
-- this index's own statistics (a condition on the state and another on last_error would be
-- taken as independent, and their rows underestimated many times over). The uuid keeps the
-- rows of every other state spread over the index (no hot tail on CockroachDB, which cannot
-- hash-shard an index on an expression).
CREATE INDEX IF NOT EXISTS notifications_listed_by_reason
    ON notifications ((CASE WHEN state = 'failed'
                            THEN split_part(split_part(last_error, ':', 1), ' ', 1)
                            ELSE uuid::text END), received_at, uuid);

-- Superseded by notifications_listed_by_state (its prefix).
DROP INDEX IF EXISTS notifications_state_received_at;
