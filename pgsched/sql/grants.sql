-- Least-privilege grants, one block per kind of role (`pgsched grant KIND ROLE`).
-- `{schema}` is the quoted schema, `{role}` the quoted role name. The schema's owner (who runs
-- `pgsched migrate`) keeps DDL; none of these roles can change the schema.

-- name: runner
-- Claims, executes and records runs; syncs definitions; prunes history. Never deletes jobs.
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT, INSERT, UPDATE ON {schema}.jobs TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.runs TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.runners TO {role};
GRANT SELECT ON {schema}.alembic_version TO {role};
GRANT UPDATE ON {schema}.sync_lock TO {role};  -- LOCK TABLE for sync (0004_topology.sql)
GRANT SELECT, INSERT, DELETE ON {schema}.definitions TO {role};  -- its code (0005)
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.schedules TO {role};  -- (0007)

-- name: requester
-- May request a manual run (only job_name and params: it cannot forge a status or a result),
-- add, edit and remove runtime schedules (the code/profile ones are refused by a trigger,
-- 0009), and read history;
-- may not change history, jobs or runners.
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT ON {schema}.jobs, {schema}.runs, {schema}.runners, {schema}.actions,
                {schema}.definitions, {schema}.schedules TO {role};
GRANT INSERT (job_name, params) ON {schema}.runs TO {role};
-- (next_run_at and error: add_schedule writes the first tick it computed, and replace clears
-- the error; a runner recomputes both of any row whose cron or zone changes.)
GRANT INSERT (job_name, key, cron, timezone, params, enabled, paused, next_run_at),
      UPDATE (cron, timezone, params, enabled, paused, next_run_at, error), DELETE
    ON {schema}.schedules TO {role};

-- name: reader
-- Dashboards and ad-hoc history queries (a read-only `pgsched dashboard` runs as this).
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT ON {schema}.jobs, {schema}.runs, {schema}.runners, {schema}.actions,
                {schema}.definitions, {schema}.schedules TO {role};
