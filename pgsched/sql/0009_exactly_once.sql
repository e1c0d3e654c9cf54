-- pgsched schema, version 0009 (migrations/versions/0009_exactly_once.py).
-- Three holes in exactly-once, closed where every client passes: the database.
-- A. A cancel acknowledged on a running run ends its retry chain, even when the run fails
--    at that moment (the job raised, or its lease was lost): no retry follows a run whose
--    cancel was requested. (cancel_run in sql/queries.sql also cancels the retry waiting
--    after a failed run of the chain.)
-- B. Only sync writes the code/profile schedules (key 'default'): a requester edits and
--    removes runtime schedules only, and cannot turn one into the other.
-- C. Removing and re-adding a schedule key never loses a tick: record_ticks (queries.sql)
--    revives the tick of the removed schedule that never started, under the unchanged
--    unique key, so runners of the previous version keep their ON CONFLICT clause. Here:
--    the history of ticks claimed ahead and cancelled before they started gets no
--    negative duration (their started_at was the future tick, a placeholder).

-- A. Every path that fails a running run comes here (0001): a run whose cancel was
-- requested is not retried, whatever it ended as.
CREATE OR REPLACE FUNCTION {schema}.retry_failed_run() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    job {schema}.jobs%ROWTYPE;
BEGIN
    IF NEW.cancel_requested_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
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

-- B. Who may write code/profile rows: the roles that hold UPDATE on the whole table, i.e.
-- the owner and runner roles (sync); a requester holds UPDATE on some columns only. A
-- trigger, not row-level security: RLS would silently skip the rows (UPDATE 0), where a
-- requester must be told why; and it would need a policy per kind of role. The privilege
-- check is in the triggers' WHEN clauses, so the claims' writes of next_run_at (a runner
-- role, or the owner) never call the function. Inside pgsched's SECURITY DEFINER triggers
-- and the foreign key's cascades current_user is the owner: those writes pass.
CREATE FUNCTION {schema}.refuse_schedule_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target record := CASE WHEN TG_OP = 'INSERT' THEN NEW ELSE OLD END;
    what text;
BEGIN
    what := format('schedule %L of job %L', target.key, target.job_name);
    IF TG_OP = 'UPDATE' AND OLD.source = 'runtime' AND NEW.source = 'runtime' THEN
        RAISE EXCEPTION '%: its job and key are what it is: remove it and add another', what
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION '%: only pgsched''s sync writes code/profile schedules (role % may '
                    'write runtime schedules only)', what, current_user
        USING ERRCODE = 'insufficient_privilege',
              HINT = format('change it in code or the profile, or have an operator pause '
                            'the job (`pgsched jobs pause %s`, as the runner role or owner)',
                            target.job_name);
END $$;

CREATE TRIGGER schedules_sync_owned_insert
    BEFORE INSERT ON {schema}.schedules
    FOR EACH ROW
    WHEN (NEW.source <> 'runtime'
          AND NOT has_table_privilege('{schema}.schedules'::regclass, 'UPDATE'))
    EXECUTE FUNCTION {schema}.refuse_schedule_write();

CREATE TRIGGER schedules_sync_owned_update
    BEFORE UPDATE ON {schema}.schedules
    FOR EACH ROW
    WHEN ((OLD.source <> 'runtime' OR NEW.source <> 'runtime'
           OR NEW.job_name IS DISTINCT FROM OLD.job_name OR NEW.key IS DISTINCT FROM OLD.key)
          AND NOT has_table_privilege('{schema}.schedules'::regclass, 'UPDATE'))
    EXECUTE FUNCTION {schema}.refuse_schedule_write();

CREATE TRIGGER schedules_sync_owned_delete
    BEFORE DELETE ON {schema}.schedules
    FOR EACH ROW
    WHEN (OLD.source <> 'runtime'
          AND NOT has_table_privilege('{schema}.schedules'::regclass, 'UPDATE'))
    EXECUTE FUNCTION {schema}.refuse_schedule_write();

-- C. A tick claimed ahead and cancelled before its time kept its future tick as started_at
-- (finish_runs now clears it): it never started.
UPDATE {schema}.runs SET started_at = NULL
WHERE status = 'cancelled' AND started_at > finished_at;
