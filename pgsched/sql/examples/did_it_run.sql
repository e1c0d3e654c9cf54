-- Did each job run, when, how long, and how did it end? (latest run per job)
SELECT j.name, j.schedule, j.paused, j.enabled, j.next_run_at,
       r.status, r.scheduled_for, r.started_at, r.duration, r.message
FROM pgsched.jobs j
LEFT JOIN LATERAL (
    SELECT * FROM pgsched.runs r
    WHERE r.job_name = j.name AND r.status NOT IN ('pending', 'running')
    ORDER BY r.id DESC LIMIT 1
) r ON true
ORDER BY j.name;
