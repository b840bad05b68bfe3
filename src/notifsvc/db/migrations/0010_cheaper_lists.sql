-- The indexes of GET /notifications, cheaper to keep (issue #22). Runs unchanged on
-- PostgreSQL and CockroachDB; each statement is applied on its own and is idempotent. On
-- CockroachDB, 0006_crdb_lists.sql replaces them with hash-sharded ones.
--
-- Every notification's row is written four times (inserted, forwarded, claimed, its
-- outcome). Each write changes `state`, so none is a HOT update, and each one added an entry
-- to every index of 0006: its five list indexes took about half of PostgreSQL's CPU per
-- notification. Three of the four writes are of a row in flight, which the lists of finished
-- rows (what operators look for) never show. So the list indexes now hold either finished
-- rows (sent, failed, canceled, expired: one entry each, at the outcome) or unfinished ones
-- (received, scheduled, forwarded, sending: one index, three entries), and a list over both
-- reads the two ranges and merges them (notifsvc/db/queries.py):
--   no filter, since/until ... finished (received_at, uuid)  + unfinished (received_at, uuid)
--   channel .................. finished (channel, ...)        + unfinished, channel a filter
--   a finished state ......... finished (state, ...)
--   channel and that state ... finished (channel, state, ...)
--   an unfinished state ...... unfinished (received_at, uuid), state a filter (with channel)
--   reason ................... failed (<reason>, received_at, uuid)
-- The state lists are spelled out as the queries spell them (notifsvc.db.queries), so that
-- the planner proves each partial index applies.
CREATE INDEX IF NOT EXISTS notifications_listed_finished
    ON notifications (received_at, uuid)
    WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_finished_by_channel
    ON notifications (channel, received_at, uuid)
    WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_finished_by_state
    ON notifications (state, received_at, uuid)
    WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_finished_by_channel_state
    ON notifications (channel, state, received_at, uuid)
    WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX IF NOT EXISTS notifications_listed_unfinished
    ON notifications (received_at, uuid)
    WHERE state IN ('received', 'scheduled', 'forwarded', 'sending');

-- A failed row's reason code: the word its last_error starts with (notifsvc.model.reason_of,
-- notifsvc.db.queries.REASON_KEY). Only failed rows are in it.
CREATE INDEX IF NOT EXISTS notifications_listed_failed_by_reason
    ON notifications ((split_part(split_part(last_error, ':', 1), ' ', 1)), received_at, uuid)
    WHERE state = 'failed';

-- Superseded by the ones above.
DROP INDEX IF EXISTS notifications_listed;
DROP INDEX IF EXISTS notifications_listed_by_state;
DROP INDEX IF EXISTS notifications_listed_by_channel;
DROP INDEX IF EXISTS notifications_listed_by_channel_state;
DROP INDEX IF EXISTS notifications_listed_by_reason;
