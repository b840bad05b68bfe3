-- The list indexes as migration 0006 made them (before 0010), for `make bench-store`.
CREATE INDEX IF NOT EXISTS notifications_listed ON notifications (received_at, uuid);
CREATE INDEX IF NOT EXISTS notifications_listed_by_state ON notifications (state, received_at, uuid);
CREATE INDEX IF NOT EXISTS notifications_listed_by_channel ON notifications (channel, received_at, uuid);
CREATE INDEX IF NOT EXISTS notifications_listed_by_channel_state ON notifications (channel, state, received_at, uuid);
CREATE INDEX IF NOT EXISTS notifications_listed_by_reason ON notifications ((CASE WHEN state = 'failed' THEN split_part(split_part(last_error, ':', 1), ' ', 1) ELSE uuid::text END), received_at, uuid);
DROP INDEX IF EXISTS notifications_listed_finished;
DROP INDEX IF EXISTS notifications_listed_finished_by_channel;
DROP INDEX IF EXISTS notifications_listed_finished_by_state;
DROP INDEX IF EXISTS notifications_listed_finished_by_channel_state;
DROP INDEX IF EXISTS notifications_listed_unfinished;
DROP INDEX IF EXISTS notifications_listed_failed_by_reason;
