-- Status callbacks (notifsvc/callbacks.py): the callback URLs whose receiver answered 410
-- Gone. The dispatcher sends them nothing more; their later events are dropped (and
-- counted). Runs unchanged on PostgreSQL and CockroachDB; idempotent. Deleting a row (see
-- notifsvc/db/callbacks.py, CallbackStore.forget) turns callbacks to that URL on again.
CREATE TABLE IF NOT EXISTS callback_endpoints_gone (
    url     TEXT        PRIMARY KEY,
    gone_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
