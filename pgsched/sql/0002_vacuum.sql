-- pgsched schema, version 0002 (migrations/versions/0002_vacuum.py).
-- The hot tables are vacuumed without autovacuum's cost delay: at thousands of runs per second,
-- a throttled vacuum of `runs` (2 ms of sleep every 200 page-cost units) ends long after the
-- next ones are due, and the table and its indexes grow for as long as the load lasts
-- (bench/bloat.py). Both tables stay small under retention, so a full-speed pass is short.
ALTER TABLE {schema}.runs SET (autovacuum_vacuum_cost_delay = 0);
ALTER TABLE {schema}.jobs SET (autovacuum_vacuum_cost_delay = 0);
