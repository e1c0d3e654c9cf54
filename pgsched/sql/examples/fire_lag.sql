-- How late did scheduled ticks start? (started_at - scheduled_for)
SELECT job_name,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)) * 1000 AS p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)) * 1000 AS p99_ms
FROM pgsched.runs
WHERE trigger = 'schedule' AND started_at IS NOT NULL AND created_at > now() - interval '1 hour'
GROUP BY job_name;
