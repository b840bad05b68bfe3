-- Status callbacks: where a notification's events go, and which API key posted it (whose
-- secrets sign them). Kept on the row so that a notification re-read from the database (a
-- re-post of an unforwarded one, the reconciler's re-drive) still has them.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS callback_url TEXT;

ALTER TABLE notifications ADD COLUMN IF NOT EXISTS client TEXT;
