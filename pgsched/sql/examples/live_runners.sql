-- Live runners and what each is running now.
SELECT w.id, w.hostname, w.pid, w.heartbeat_at, now() - w.heartbeat_at AS silent_for,
       array_agg(r.job_name) FILTER (WHERE r.id IS NOT NULL) AS running
FROM pgsched.runners w
LEFT JOIN pgsched.runs r ON r.runner = w.id AND r.status = 'running'
GROUP BY w.id
ORDER BY w.started_at;
