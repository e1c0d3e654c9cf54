-- pgsched schema, version 0010 (migrations/versions/0010_isolation.py).
-- The job's `isolation` setting ('thread', or 'process': a killable worker process), synced
-- like every other setting, so `jobs show`, the dashboard and SQL can say how a job runs.
-- Informational: each runner runs a job as its own code says. Existing rows read 'thread'
-- until the next sync of a runner of 0.3 or later (older runners' syncs leave it as it is).
ALTER TABLE {schema}.jobs ADD COLUMN isolation text NOT NULL DEFAULT 'thread'
    CHECK (isolation IN ('thread', 'process'));
