-- Scheduled sends and expiry (notifsvc/router.py places them, notifsvc/schedule.py holds
-- them until due). Runs unchanged on PostgreSQL and CockroachDB; each statement is applied
-- on its own and is idempotent (the constraint's "drop if exists, add, drop the old" runs
-- again from any statement, and the table always has one of the two checks).

-- When the client asked it to be sent (NULL: at once), after when it must never be sent
-- (NULL: never), and when it was dropped for that (NULL: it was not).
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS send_at TIMESTAMPTZ;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS expired_at TIMESTAMPTZ;

-- The states (notifsvc.model.State) gain `scheduled` (waiting for its send_at) and
-- `expired` (its expires_at passed before it was sent).
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_state_valid_v2;
ALTER TABLE notifications ADD CONSTRAINT notifications_state_valid_v2
    CHECK (state IN ('received', 'scheduled', 'forwarded', 'sending', 'sent', 'failed',
                     'canceled', 'expired'));
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_state_valid;
