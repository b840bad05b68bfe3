-- No index reads `state` or `updated_at` (issue #22). Runs unchanged on PostgreSQL and
-- CockroachDB; each statement is applied on its own and is idempotent. On CockroachDB,
-- 0008_crdb_hot_updates.sql replaces the list indexes with hash-sharded ones.
--
-- Every notification's row is written four times: inserted, forwarded, claimed, and its
-- outcome. The forward (received -> forwarded) and the claim (forwarded -> sending) change
-- only `state` and `updated_at`. While an index read either of them (in its key or in its
-- condition), PostgreSQL had to write each of those two updates as a new row version with
-- a new entry in every index of the table. Now the indexes read `resting_state`: the
-- state of a row at rest, NULL while it is in flight (received, forwarded, sending). The
-- forward and the claim leave it NULL, so, with room on the page (the fillfactor below),
-- PostgreSQL updates the row in place (a HOT update: no index entry at all). CockroachDB
-- has no HOT, but an UPDATE there writes only the index entries whose columns changed, so
-- the same two updates stop writing list-index entries there as well.
--
-- The column is computed by the database from `state`, so no statement writes it and none
-- can forget to. Adding it rewrites the table on PostgreSQL (under an exclusive lock:
-- writers wait, which the router and notificators treat as an outage, pausing and
-- retrying); CockroachDB backfills it online. Its states are spelled out as in
-- notifsvc.db.queries (IN_FLIGHT, RESTING), so that the planner proves each partial
-- index applies to the queries that spell them the same way.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS resting_state TEXT
    GENERATED ALWAYS AS (
        CASE WHEN state IN ('received', 'forwarded', 'sending') THEN NULL ELSE state END
    ) STORED;

-- The lists of GET /notifications (notifsvc/db/queries.py), as 0010 and 0011 made them, on
-- `resting_state` instead of `state`: rows at rest (scheduled, sent, failed, canceled,
-- expired) by state and by channel and state; rows in flight in one range, which is also
-- the reconciler's (notifsvc/reconciler.py: it reads rows in flight received longer ago
-- than it waits before re-driving, in received_at order, and tests `updated_at` on the
-- row); failed rows by reason.
CREATE INDEX IF NOT EXISTS notifications_listed_resting_by_state
    ON notifications (resting_state, received_at, uuid)
    WHERE resting_state IN ('scheduled', 'sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_resting_by_channel_state
    ON notifications (channel, resting_state, received_at, uuid)
    WHERE resting_state IN ('scheduled', 'sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_in_flight
    ON notifications (received_at, uuid) WHERE resting_state IS NULL;
CREATE INDEX IF NOT EXISTS notifications_listed_failed_by_reason_v2
    ON notifications ((split_part(split_part(last_error, ':', 1), ' ', 1)), received_at, uuid)
    WHERE resting_state = 'failed';

-- The parked reader's scheduled rows by due time (0009), on `resting_state`.
CREATE INDEX IF NOT EXISTS notifications_scheduled_v2
    ON notifications (send_at, uuid) WHERE resting_state = 'scheduled';

-- Each new page of the table keeps half of it free: room for the forward's new version of
-- every row on the page next to the old one, and for the claim's once the page is pruned
-- of the forward's old versions (PostgreSQL does that when it finds the page full). The
-- price is space: a page of rows at rest stays about half full. With 30 % free, fewer than
-- half of the forwards found room (`make bench-store`, docs/performance.md); a deployment
-- that prefers space over CPU can set another value (it applies to pages filled after).
-- CockroachDB accepts the parameter and ignores it.
ALTER TABLE notifications SET (fillfactor = 50);

-- Superseded by the ones above.
DROP INDEX IF EXISTS notifications_unfinished_v2;
DROP INDEX IF EXISTS notifications_listed_finished_by_state;
DROP INDEX IF EXISTS notifications_listed_finished_by_channel_state;
DROP INDEX IF EXISTS notifications_listed_unfinished;
DROP INDEX IF EXISTS notifications_listed_failed_by_reason;
DROP INDEX IF EXISTS notifications_scheduled;
