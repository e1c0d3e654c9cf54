-- Undoes 0005_definitions.sql.
DROP TABLE {schema}.definitions;
ALTER TABLE {schema}.runners DROP COLUMN code_version;
ALTER TABLE {schema}.jobs DROP COLUMN defined_by;
