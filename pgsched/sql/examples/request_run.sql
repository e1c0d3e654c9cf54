-- Request a manual run from any client (psql, another service, a migration...).
-- A runner starts it within milliseconds (LISTEN/NOTIFY); an unknown job name is refused.
INSERT INTO pgsched.runs (job_name, params)
VALUES ('demo-greet', '{"name": "Ada"}')
RETURNING id;
