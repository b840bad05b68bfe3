-- Runs unchanged on PostgreSQL and CockroachDB. Each statement is applied on its own
-- (no DDL inside multi-statement transactions) and is idempotent.
CREATE TABLE IF NOT EXISTS notifications (
    uuid         UUID        PRIMARY KEY,
    channel      TEXT        NOT NULL,
    recipient    TEXT        NOT NULL,
    body         TEXT        NOT NULL,
    subject      TEXT,
    priority     TEXT        NOT NULL DEFAULT 'normal',
    fingerprint  BYTEA       NOT NULL,
    state        TEXT        NOT NULL DEFAULT 'received'
                 CHECK (state IN ('received', 'forwarded', 'sent', 'failed')),
    attempts     INT         NOT NULL DEFAULT 0,
    conflicts    INT         NOT NULL DEFAULT 0,
    last_error   TEXT,
    accepted_at  TIMESTAMPTZ NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    forwarded_at TIMESTAMPTZ,
    sent_at      TIMESTAMPTZ,
    failed_at    TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Finds rows stuck before forwarding, and counts by state for operators.
CREATE INDEX IF NOT EXISTS notifications_state_received_at ON notifications (state, received_at);
