-- Undoes 0009_exactly_once.sql. Cleared started_at of never-started cancelled ticks stay
-- cleared (the future tick they held was a placeholder, not a start).
DROP TRIGGER schedules_sync_owned_insert ON {schema}.schedules;
DROP TRIGGER schedules_sync_owned_update ON {schema}.schedules;
DROP TRIGGER schedules_sync_owned_delete ON {schema}.schedules;
DROP FUNCTION {schema}.refuse_schedule_write();
CREATE OR REPLACE FUNCTION {schema}.retry_failed_run() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    job {schema}.jobs%ROWTYPE;
BEGIN
    SELECT * INTO job FROM {schema}.jobs WHERE name = NEW.job_name;
    IF NEW.attempt < job.max_attempts AND NOT job.orphaned THEN
        INSERT INTO {schema}.runs (job_name, trigger, status, scheduled_for, run_after,
                                   attempt, retry_of, params, schedule_key)
        VALUES (NEW.job_name, 'retry', 'pending', NEW.scheduled_for,
                now() + job.retry_backoff * power(2, NEW.attempt - 1) * (0.75 + random() / 2),
                NEW.attempt + 1, coalesce(NEW.retry_of, NEW.id), NEW.params, NEW.schedule_key);
    END IF;
    RETURN NULL;
END $$;
