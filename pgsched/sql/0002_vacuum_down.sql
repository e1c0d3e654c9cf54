-- Undoes 0002_vacuum.sql.
ALTER TABLE {schema}.runs RESET (autovacuum_vacuum_cost_delay);
ALTER TABLE {schema}.jobs RESET (autovacuum_vacuum_cost_delay);
