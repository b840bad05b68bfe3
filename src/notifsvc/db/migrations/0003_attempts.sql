-- The attempt history (notifsvc/attempts.py): one row per answer a provider gave to a send,
-- written with the outcome of the pass (store.py: one statement per flush). Runs unchanged
-- on PostgreSQL and CockroachDB; each statement is applied on its own and is idempotent.
--
-- Key: a counted attempt (sent, transient, permanent) has the number it spent, 1-based
-- across passes, and seq 0; a throttled answer spends no attempt: it has the number of the
-- attempt it held back and seq = its start in Unix milliseconds. The same attempt written
-- twice keeps one row (ON CONFLICT DO NOTHING). The key's prefix serves the listing by uuid.
CREATE TABLE IF NOT EXISTS notification_attempts (
    uuid           UUID        NOT NULL,
    attempt_number INT         NOT NULL CHECK (attempt_number > 0),
    seq            INT8        NOT NULL DEFAULT 0 CHECK (seq >= 0),
    outcome        TEXT        NOT NULL
                   CHECK (outcome IN ('sent', 'transient', 'permanent', 'throttled')),
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL,
    provider       TEXT        NOT NULL,
    status_code    INT,
    message_id     TEXT,
    error_class    TEXT,
    error          TEXT,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (uuid, attempt_number, seq)
);
