-- Undoes 0006_cancel.sql.
DROP TRIGGER runs_notify_cancel_request ON {schema}.runs;
DROP FUNCTION {schema}.notify_cancel_request();
DROP INDEX {schema}.runs_cancel_requested_idx;
ALTER TABLE {schema}.runs DROP COLUMN cancel_requested_at, DROP COLUMN cancelled_by;
