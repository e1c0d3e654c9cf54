-- pgsched schema, version 0003 (migrations/versions/0003_actions.py).
-- The operators' ledger: every action taken from the dashboard (run now, pause, resume, cancel,
-- retry), who took it and when, written in the same transaction as the action itself.
CREATE TABLE {schema}.actions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,                 -- the dashboard user
    action      text NOT NULL CHECK (action IN ('run', 'pause', 'resume', 'cancel', 'retry')),
    job_name    text,                          -- no foreign key: the ledger outlives its jobs
    run_id      bigint,                        -- the run acted on, or the run an action created
    detail      jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX actions_at_idx ON {schema}.actions (at DESC);
CREATE INDEX actions_job_idx ON {schema}.actions (job_name, at DESC);
