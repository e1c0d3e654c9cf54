-- Retry chains: every attempt is its own row linked to the first (retry_of).
SELECT coalesce(retry_of, id) AS first_run, id, attempt, status, run_after, started_at, message
FROM pgsched.runs
WHERE job_name = 'demo-flaky'
ORDER BY coalesce(retry_of, id) DESC, attempt
LIMIT 50;
