-- pgsched schema, version 0008 (migrations/versions/0008_fair_claims.py).
-- Fair claims (DESIGN "Fair to every job"): claim_pending reads each job's pending runs
-- oldest first, so a backlog of one job never fills a claim while another job's request
-- waits. runs_pending_idx (run_after, id) orders all jobs together, and
-- runs_pending_schedule_idx (job_name, schedule_key) a job's runs in no useful order: per
-- job, the oldest `limit` would read the whole backlog of that job or of the others.
CREATE INDEX runs_pending_job_due_idx ON {schema}.runs (job_name, run_after, id)
    WHERE status = 'pending';
