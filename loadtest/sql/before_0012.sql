-- For `make bench-store --variant`: the indexes as they were before migration 0012, which
-- read `state` (and the reconciler's, `updated_at`), and no free space on the pages, so
-- that no update of a row in flight is a HOT update: the same-run baseline of 0012.
ALTER TABLE notifications SET (fillfactor = 100);
DROP INDEX IF EXISTS notifications_listed_resting_by_state;
DROP INDEX IF EXISTS notifications_listed_resting_by_channel_state;
DROP INDEX IF EXISTS notifications_listed_in_flight;
DROP INDEX IF EXISTS notifications_listed_failed_by_reason_v2;
DROP INDEX IF EXISTS notifications_scheduled_v2;
CREATE INDEX notifications_unfinished_v2 ON notifications (updated_at, uuid) WHERE state IN ('received', 'forwarded', 'sending');
CREATE INDEX notifications_listed_finished_by_state ON notifications (state, received_at, uuid) WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX notifications_listed_finished_by_channel_state ON notifications (channel, state, received_at, uuid) WHERE state IN ('sent', 'failed', 'canceled', 'expired');
CREATE INDEX notifications_listed_unfinished ON notifications (received_at, uuid) WHERE state IN ('received', 'scheduled', 'forwarded', 'sending');
CREATE INDEX notifications_listed_failed_by_reason ON notifications ((split_part(split_part(last_error, ':', 1), ' ', 1)), received_at, uuid) WHERE state = 'failed';
CREATE INDEX notifications_scheduled ON notifications (send_at, uuid) WHERE state = 'scheduled';
