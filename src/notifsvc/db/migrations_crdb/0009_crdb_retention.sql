-- CockroachDB only. Retention is the router's duty now (notifsvc/retention.py), on
-- CockroachDB as on PostgreSQL, for NOTIFSVC_RETENTION_DAYS (default 30, as the row-level TTL
-- of 0001-0005 was): the same rule and one setting on both. The TTL would delete rows the
-- setting keeps, and attempts apart from their notification, so it goes.
ALTER TABLE notifications RESET (ttl);
ALTER TABLE notification_attempts RESET (ttl);
