-- Why did a tick not run? Every tick's fate is a row: skipped ticks carry the reason
-- (overlap, misfire after downtime or pause), failed ones the error.
SELECT id, job_name, scheduled_for, status, message, error->>'type' AS error_type
FROM pgsched.runs
WHERE job_name = 'demo-heartbeat'
  AND status IN ('skipped', 'failed', 'cancelled')
ORDER BY scheduled_for DESC
LIMIT 50;
