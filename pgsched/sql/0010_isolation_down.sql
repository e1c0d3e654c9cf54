-- Undoes 0010_isolation.sql.
ALTER TABLE {schema}.jobs DROP COLUMN isolation;
