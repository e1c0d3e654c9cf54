-- Duration distribution and failure rate per job over the last day.
SELECT job_name,
       count(*) AS runs,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM duration)) AS p50_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM duration)) AS p99_s,
       max(duration) AS slowest
FROM pgsched.runs
WHERE finished_at > now() - interval '1 day' AND status IN ('succeeded', 'failed')
GROUP BY job_name
ORDER BY job_name;
