-- For `make bench-store --variant`: 50 % of each new page of notifications left free for
-- updates of its rows (alone, or after another variant file, joined with +).
ALTER TABLE notifications SET (fillfactor = 50);
