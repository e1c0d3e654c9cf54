-- pgsched schema, version 0006 (migrations/versions/0006_cancel.py).
-- Cancellation: `pgsched.cancel_run`, `pgsched jobs cancel`, the dashboard or plain SQL set
-- cancel_requested_at (and who asked). A pending run becomes `cancelled` at once; a running
-- one is told (ctx.cancelled, a cancelled task, a worker process told) by the runner that
-- holds it, woken by NOTIFY, and ends `cancelled`. Retries never follow a cancelled run.
ALTER TABLE {schema}.runs ADD COLUMN cancel_requested_at timestamptz,
                          ADD COLUMN cancelled_by text;

-- A runner looks for cancel requests on the runs it holds: few rows, found by index.
CREATE INDEX runs_cancel_requested_idx ON {schema}.runs (runner)
    WHERE status = 'running' AND cancel_requested_at IS NOT NULL;

-- Wake the runner that holds a run when someone asks to cancel it. A row trigger restricted to
-- updates that set cancel_requested_at: the claims and result writes never name that column,
-- so the hot path does not even evaluate it; repeated notifications in one transaction are
-- folded into one by PostgreSQL.
CREATE FUNCTION {schema}.notify_cancel_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify({channel}, 'cancel');
    RETURN NULL;
END $$;

CREATE TRIGGER runs_notify_cancel_request
    AFTER UPDATE OF cancel_requested_at ON {schema}.runs
    FOR EACH ROW
    WHEN (NEW.status = 'running' AND NEW.cancel_requested_at IS NOT NULL
          AND OLD.cancel_requested_at IS NULL)
    EXECUTE FUNCTION {schema}.notify_cancel_request();
