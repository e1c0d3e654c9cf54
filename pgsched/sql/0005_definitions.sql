-- pgsched schema, version 0005 (migrations/versions/0005_definitions.py).
-- Runners know which code they carry: each registers the code version it runs (a hash of the
-- job names its code defines), and each version's job names are recorded once, here. A
-- runner claims ticks, requests and retries only of jobs its version defines, and a job is
-- orphaned only when no live runner defines it, so a rolling deploy of two code versions
-- fails nothing and loses nothing.
CREATE TABLE {schema}.definitions (
    code_version    text NOT NULL,
    job_name        text NOT NULL REFERENCES {schema}.jobs (name) ON UPDATE CASCADE ON DELETE CASCADE,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (code_version, job_name)
);
-- "which live versions define this job" (orphaning, jobs status)
CREATE INDEX definitions_job_idx ON {schema}.definitions (job_name);

ALTER TABLE {schema}.runners ADD COLUMN code_version text;  -- NULL: a runner from before 0005
ALTER TABLE {schema}.jobs ADD COLUMN defined_by text;        -- code version whose sync wrote it

-- Roles granted `runner` before this revision sync too: let them record definitions.
DO $$
DECLARE role_name text;
BEGIN
    FOR role_name IN
        SELECT DISTINCT r.rolname
        FROM pg_class c
        CROSS JOIN LATERAL aclexplode(c.relacl) acl
        JOIN pg_roles r ON r.oid = acl.grantee
        WHERE c.oid = '{schema}.jobs'::regclass AND acl.privilege_type = 'UPDATE'
          AND acl.grantee <> c.relowner
    LOOP
        EXECUTE 'GRANT SELECT, INSERT, DELETE ON TABLE {schema}.definitions TO '
                || quote_ident(role_name);
    END LOOP;
END $$;
