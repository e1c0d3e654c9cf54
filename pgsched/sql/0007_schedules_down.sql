-- Undoes 0007_schedules.sql. Runtime schedules are lost; the code/profile schedules stay on
-- pgsched.jobs (schedule, next_run_at), which 0007 kept up to date. Runs of runtime schedules
-- stay, but a second scheduled run of one job at one tick cannot: those are removed first.
DELETE FROM {schema}.runs r
WHERE r.trigger = 'schedule' AND r.schedule_key <> 'default'
  AND EXISTS (SELECT 1 FROM {schema}.runs o
              WHERE o.job_name = r.job_name AND o.scheduled_for = r.scheduled_for
                AND o.trigger = 'schedule' AND o.id <> r.id
                AND (o.schedule_key = 'default' OR o.id < r.id));
CREATE INDEX jobs_due_idx ON {schema}.jobs (next_run_at)
    WHERE enabled AND NOT paused AND NOT orphaned AND next_run_at IS NOT NULL;
CREATE UNIQUE INDEX runs_tick_uidx ON {schema}.runs (job_name, scheduled_for)
    WHERE trigger = 'schedule';
CREATE INDEX runs_pending_job_idx ON {schema}.runs (job_name) WHERE status = 'pending';
CREATE INDEX runs_running_job_idx ON {schema}.runs (job_name) WHERE status = 'running';
DROP INDEX {schema}.runs_schedule_tick_uidx;
DROP INDEX {schema}.runs_pending_schedule_idx;
DROP INDEX {schema}.runs_running_schedule_idx;
ALTER TABLE {schema}.runs DROP COLUMN schedule_key;
DROP TABLE {schema}.schedules;
DROP TRIGGER jobs_schedules_follow_state ON {schema}.jobs;
DROP FUNCTION {schema}.prepare_schedule_update(), {schema}.notify_schedules(),
    {schema}.cancel_deleted_schedule_runs(), {schema}.schedules_follow_new_job_state(),
    {schema}.schedules_follow_job_state();
CREATE OR REPLACE FUNCTION {schema}.retry_failed_run() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    job {schema}.jobs%ROWTYPE;
BEGIN
    SELECT * INTO job FROM {schema}.jobs WHERE name = NEW.job_name;
    IF NEW.attempt < job.max_attempts AND NOT job.orphaned THEN
        INSERT INTO {schema}.runs (job_name, trigger, status, scheduled_for, run_after,
                                   attempt, retry_of, params)
        VALUES (NEW.job_name, 'retry', 'pending', NEW.scheduled_for,
                now() + job.retry_backoff * power(2, NEW.attempt - 1) * (0.75 + random() / 2),
                NEW.attempt + 1, coalesce(NEW.retry_of, NEW.id), NEW.params);
    END IF;
    RETURN NULL;
END $$;
