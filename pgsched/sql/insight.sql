-- What operators read (the dashboard, /metrics, `pgsched health`, `pgsched jobs explain`) and
-- the few things they do, one named query per block (`-- name: x`), run by pgsched/insight.py.
-- `{schema}` is the quoted schema name. Status literals stay literals, so the planner matches
-- the partial indexes of sql/schema.sql. Every list is bounded (LIMIT, or a partial index of
-- due or in-flight work): nothing here reads all of history, whatever its size.
-- A tick's fate is decided in one place, the `fate` expression repeated below as-is:
--   missed  a skipped tick whose message starts with "missed:" (the misfire policy's note),
--   skipped any other skipped tick (overlap=skip while the job ran),
--   failed  failed or cancelled,
--   waiting pending or running but not started yet,
--   late    started more than %(late_after)s seconds after its tick,
--   running / on_time otherwise.
-- A job's schedules are rows of pgsched.schedules (sql/0007_schedules.sql); pgsched.jobs keeps
-- the code/profile one (`schedule`, `next_run_at`), which `job_state` reads for "invalid".

-- name: waiting_for_code
-- Pending runs of jobs no live runner's code defines: what they wait for.
SELECT r.job_name, count(*) AS pending, min(r.created_at) AS since
FROM {schema}.runs r
WHERE r.status = 'pending'
  AND NOT EXISTS (SELECT 1 FROM {schema}.definitions d
                  JOIN {schema}.runners w ON w.code_version = d.code_version
                  WHERE d.job_name = r.job_name
                    AND w.heartbeat_at >= now() - make_interval(secs => %(lease_timeout)s))
GROUP BY r.job_name
ORDER BY r.job_name

-- name: defining_runners
-- Live runners whose code defines a job (a runner from before revision 0005, with no code
-- version, is counted: it may claim anything).
SELECT w.id, w.version, w.code_version
FROM {schema}.runners w
WHERE w.heartbeat_at >= now() - make_interval(secs => %(lease_timeout)s)
  AND w.concurrency > 0
  AND (w.code_version IS NULL
       OR EXISTS (SELECT 1 FROM {schema}.definitions d
                  WHERE d.code_version = w.code_version AND d.job_name = %(name)s))
ORDER BY w.started_at

-- name: running_runs
-- In flight, from the partial index on running runs. A tick claimed ahead of its time holds
-- its tick as started_at until it starts: its elapsed time is 0, not negative.
SELECT r.id, r.job_name, r.trigger, r.status, r.scheduled_for, r.started_at, r.runner,
       r.attempt, r.message,
       greatest(0, extract(epoch FROM now() - r.started_at))::float8 AS elapsed
FROM {schema}.runs r
WHERE r.status = 'running'
ORDER BY r.id
LIMIT %(limit)s

-- name: recent_failures
-- Failures of the last `hours`, newest first (runs_finished_idx), each with whether a later
-- attempt of its retry chain succeeded: a probe of the job's history newer than the failure.
SELECT r.id, r.job_name, r.trigger, r.scheduled_for, r.finished_at, r.attempt, r.message,
       coalesce(r.retry_of, r.id) AS chain,
       ok.id AS retry_succeeded_id, ok.attempt AS retry_succeeded_attempt
FROM {schema}.runs r
LEFT JOIN LATERAL (
    SELECT x.id, x.attempt FROM {schema}.runs x
    WHERE x.job_name = r.job_name AND x.id > r.id AND x.status = 'succeeded'
      AND x.retry_of = coalesce(r.retry_of, r.id)
    ORDER BY x.id LIMIT 1
) ok ON true
WHERE r.finished_at > now() - make_interval(hours => %(hours)s) AND r.status = 'failed'
ORDER BY r.finished_at DESC
LIMIT %(limit)s

-- name: recent_missed
-- Ticks the misfire policy recorded as missed (skipped, "missed: ..."), newest first.
SELECT r.id, r.job_name, r.scheduled_for, r.finished_at, r.message
FROM {schema}.runs r
WHERE r.finished_at > now() - make_interval(hours => %(hours)s) AND r.status = 'skipped'
  AND r.message LIKE 'missed:%%'
ORDER BY r.finished_at DESC
LIMIT %(limit)s

-- name: overdue_ticks
-- Ticks that should have started more than the job's misfire grace ago and have not: due
-- ticks no runner claimed (schedules_due_idx, then the grace per row: one per schedule), and
-- scheduled runs still pending past it (runs_pending_idx). `count` is per job; `since` the
-- oldest of them.
WITH unclaimed AS (
    SELECT s.job_name, count(*) AS n, min(s.next_run_at) AS since
    FROM {schema}.schedules s
    JOIN {schema}.jobs j ON j.name = s.job_name
    WHERE s.enabled AND NOT s.paused AND s.job_active AND s.error IS NULL
      AND s.next_run_at IS NOT NULL AND s.next_run_at < now() - interval '1 second'
      AND j.enabled AND NOT j.paused AND NOT j.orphaned
      AND s.next_run_at < now() - j.misfire_grace
    GROUP BY s.job_name
), queued AS (
    SELECT r.job_name, count(*) AS n, min(r.run_after) AS since
    FROM {schema}.runs r
    JOIN {schema}.jobs j ON j.name = r.job_name
    WHERE r.status = 'pending' AND r.run_after < now() - interval '1 second'
      AND r.trigger = 'schedule' AND r.run_after < now() - j.misfire_grace
    GROUP BY r.job_name
)
SELECT job_name, sum(n)::int AS count, min(since) AS since
FROM (SELECT * FROM unclaimed UNION ALL SELECT * FROM queued) o
GROUP BY job_name
ORDER BY min(since)
LIMIT %(limit)s

-- name: schedule_errors
-- Schedules that cannot fire, for the overview's warning: how many (up to `limit`), of how many
-- jobs, and the first of those jobs by name. No index holds `error IS NOT NULL`, so while
-- every schedule is valid this reads the whole table (a sequential scan); with some broken it
-- stops at `limit` of them.
SELECT count(*)::int AS n, count(DISTINCT b.job_name)::int AS jobs, min(b.job_name) AS first_job
FROM (SELECT s.job_name FROM {schema}.schedules s WHERE s.error IS NOT NULL
      LIMIT %(limit)s) b

-- name: count_jobs
-- How many jobs match the jobs page's search and state filter (for its pager).
SELECT count(*) AS n
FROM {schema}.jobs j
WHERE (%(q)s::text IS NULL OR strpos(lower(j.name), lower(%(q)s)) > 0
       OR strpos(lower(j.extension), lower(%(q)s)) > 0)
  AND (%(state)s::text IS NULL
       OR (%(state)s = 'orphaned' AND j.orphaned)
       OR (%(state)s = 'disabled' AND NOT j.orphaned AND NOT j.enabled)
       OR (%(state)s = 'paused' AND NOT j.orphaned AND j.enabled AND j.paused)
       OR (%(state)s = 'enabled' AND NOT j.orphaned AND j.enabled AND NOT j.paused))

-- name: jobs_page
-- One page of jobs, by name, with the last finished run (a probe of runs_job_history_idx) and
-- its schedules: how many, how many cannot fire, and the earliest next tick over those that
-- can (`next_tick`; `next_run_at` is the code/profile schedule's alone). The schedules are
-- counted through schedules_job_key, so a job's cost follows its own schedules.
SELECT j.name, j.extension, j.description, j.schedule, j.timezone, j.enabled, j.paused,
       j.orphaned, j.next_run_at, j.overlap, j.misfire,
       last.status AS last_status, last.finished_at AS last_finished_at, last.id AS last_id,
       s.total AS schedules, s.errors AS schedule_errors, s.next_tick
FROM {schema}.jobs j
LEFT JOIN LATERAL (
    SELECT r.id, r.status, r.finished_at FROM {schema}.runs r
    WHERE r.job_name = j.name AND r.finished_at IS NOT NULL
    ORDER BY r.id DESC LIMIT 1
) last ON true
CROSS JOIN LATERAL (
    SELECT count(*)::int AS total, count(*) FILTER (WHERE x.error IS NOT NULL)::int AS errors,
           min(x.next_run_at) FILTER (WHERE x.enabled AND NOT x.paused AND x.error IS NULL)
               AS next_tick
    FROM {schema}.schedules x WHERE x.job_name = j.name
) s
WHERE (%(q)s::text IS NULL OR strpos(lower(j.name), lower(%(q)s)) > 0
       OR strpos(lower(j.extension), lower(%(q)s)) > 0)
  AND (%(state)s::text IS NULL
       OR (%(state)s = 'orphaned' AND j.orphaned)
       OR (%(state)s = 'disabled' AND NOT j.orphaned AND NOT j.enabled)
       OR (%(state)s = 'paused' AND NOT j.orphaned AND j.enabled AND j.paused)
       OR (%(state)s = 'enabled' AND NOT j.orphaned AND j.enabled AND NOT j.paused))
ORDER BY j.name
LIMIT %(limit)s OFFSET %(offset)s

-- name: tick_strips
-- The last `per_job` ticks of each named job, oldest first within a job, with their fate
-- (see the header). One probe of runs_job_history_idx per job.
SELECT n.name AS job_name, t.id, t.status, t.scheduled_for, t.started_at, t.finished_at,
       t.message, t.lag, t.fate
FROM unnest(%(names)s::text[]) AS n(name)
CROSS JOIN LATERAL (
    SELECT r.id, r.status, r.scheduled_for, r.started_at, r.finished_at, r.message,
           extract(epoch FROM r.started_at - r.scheduled_for)::float8 AS lag,
           CASE WHEN r.status = 'skipped' AND r.message LIKE 'missed:%%' THEN 'missed'
                WHEN r.status = 'skipped' THEN 'skipped'
                WHEN r.status IN ('failed', 'cancelled') THEN 'failed'
                WHEN r.status = 'pending' THEN 'waiting'
                WHEN r.started_at - r.scheduled_for > make_interval(secs => %(late_after)s)
                    THEN 'late'
                WHEN r.status = 'running' THEN 'running'
                ELSE 'on_time' END AS fate
    FROM {schema}.runs r
    WHERE r.job_name = n.name AND r.trigger = 'schedule'
    ORDER BY r.id DESC
    LIMIT %(per_job)s
) t
ORDER BY n.name, t.id

-- name: job_page
SELECT j.name, j.extension, j.description, j.schedule, j.timezone, j.enabled, j.paused,
       j.orphaned, extract(epoch FROM j.timeout)::float8 AS timeout, j.max_attempts,
       extract(epoch FROM j.retry_backoff)::float8 AS retry_backoff, j.overlap, j.misfire,
       extract(epoch FROM j.misfire_grace)::float8 AS misfire_grace, j.misfire_cap, j.tags,
       j.isolation, j.overrides, j.origin, j.next_run_at, j.created_at, j.updated_at, j.synced_at,
       now() AS db_now
FROM {schema}.jobs j WHERE j.name = %(name)s

-- name: job_schedules
-- A job's schedules (pgsched.schedules): the code/profile one first, then those that cannot
-- fire, then by key; the first `limit` (schedule_counts has the totals).
SELECT s.key, s.cron, coalesce(s.timezone, j.timezone) AS timezone,
       s.timezone IS NULL AS job_zone, s.next_run_at, s.source, s.params, s.enabled, s.paused,
       s.error
FROM {schema}.schedules s
JOIN {schema}.jobs j ON j.name = s.job_name
WHERE s.job_name = %(name)s
ORDER BY s.key = 'default' DESC, s.error IS NULL, s.key
LIMIT %(limit)s

-- name: schedule_counts
-- How many schedules a job has, how many cannot fire, and its next tick over all of them.
SELECT count(*)::int AS total, count(*) FILTER (WHERE s.error IS NOT NULL)::int AS errors,
       count(*) FILTER (WHERE s.next_run_at IS NULL AND s.error IS NULL)::int AS unvalidated,
       min(s.next_run_at) FILTER (WHERE s.enabled AND NOT s.paused AND s.error IS NULL)
           AS next_run_at
FROM {schema}.schedules s WHERE s.job_name = %(name)s

-- name: job_runs
-- A job's recent runs, newest first (runs_job_history_idx), with the fire lag of ticks.
SELECT r.id, r.job_name, r.trigger, r.status, r.scheduled_for, r.created_at, r.started_at,
       r.finished_at, extract(epoch FROM r.duration)::float8 AS duration,
       extract(epoch FROM r.started_at - r.scheduled_for)::float8 AS lag, r.runner, r.attempt,
       r.retry_of, r.message, r.requested_by
FROM {schema}.runs r
WHERE r.job_name = %(name)s
ORDER BY r.id DESC
LIMIT %(limit)s

-- name: job_timings
-- Fire lag (started_at - scheduled_for) and duration of a job's last `limit` started ticks,
-- for the job page's chart, oldest first.
SELECT extract(epoch FROM t.scheduled_for)::float8 AS at, t.lag, t.duration
FROM (
    SELECT r.id, r.scheduled_for,
           extract(epoch FROM r.started_at - r.scheduled_for)::float8 AS lag,
           extract(epoch FROM r.duration)::float8 AS duration
    FROM {schema}.runs r
    WHERE r.job_name = %(name)s AND r.trigger = 'schedule' AND r.started_at IS NOT NULL
      AND r.status IN ('running', 'succeeded', 'failed')
    ORDER BY r.id DESC
    LIMIT %(limit)s
) t
ORDER BY t.id

-- name: job_holdups
-- What could hold a job back: its running runs (running index) and pending ones (pending
-- index), a few of each.
SELECT r.id, r.status, r.trigger, r.scheduled_for, r.run_after, r.started_at, r.runner
FROM {schema}.runs r
WHERE r.job_name = %(name)s AND r.status = 'running'
UNION ALL
(SELECT r.id, r.status, r.trigger, r.scheduled_for, r.run_after, r.started_at, r.runner
 FROM {schema}.runs r
 WHERE r.job_name = %(name)s AND r.status = 'pending'
 ORDER BY r.run_after LIMIT 20)

-- name: last_misfire
-- The misfire policy's most recent decision for a job: the newest tick it annotated.
SELECT r.id, r.status, r.scheduled_for, r.message
FROM {schema}.runs r
WHERE r.job_name = %(name)s AND r.trigger = 'schedule' AND r.message LIKE 'missed:%%'
ORDER BY r.id DESC
LIMIT 1

-- name: search_runs
-- The runs page: filters by job, status, trigger and a time range on created_at, newest
-- first, one page at a time (keyset on id).
SELECT r.id, r.job_name, r.trigger, r.status, r.scheduled_for, r.created_at, r.started_at,
       r.finished_at, extract(epoch FROM r.duration)::float8 AS duration,
       extract(epoch FROM r.started_at - r.scheduled_for)::float8 AS lag, r.runner, r.attempt,
       r.retry_of, r.message, r.requested_by
FROM {schema}.runs r
WHERE (%(job)s::text IS NULL OR r.job_name = %(job)s)
  AND (%(status)s::text IS NULL OR r.status = %(status)s)
  AND (%(trigger)s::text IS NULL OR r.trigger = %(trigger)s)
  AND (%(since)s::timestamptz IS NULL OR r.created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR r.created_at < %(until)s)
  AND (%(before)s::bigint IS NULL OR r.id < %(before)s)
ORDER BY r.id DESC
LIMIT %(limit)s

-- name: run_page
SELECT r.id, r.job_name, r.trigger, r.status, r.scheduled_for, r.run_after, r.created_at,
       r.started_at, r.finished_at, extract(epoch FROM r.duration)::float8 AS duration,
       extract(epoch FROM r.started_at - r.scheduled_for)::float8 AS lag, r.runner, r.attempt,
       r.retry_of, r.params, r.message, r.error, r.stats, r.data, r.requested_by,
       r.cancel_requested_at, r.cancelled_by, j.timezone, j.max_attempts
FROM {schema}.runs r
JOIN {schema}.jobs j ON j.name = r.job_name
WHERE r.id = %(id)s

-- name: retry_chain
-- Every attempt of a run's retry chain (the first run and those whose retry_of is it), from
-- the job's history newer than the first.
SELECT r.id, r.status, r.attempt, r.trigger, r.created_at, r.started_at, r.finished_at,
       r.message
FROM {schema}.runs r
WHERE r.job_name = %(job)s AND r.id >= %(chain)s
  AND (r.id = %(chain)s OR r.retry_of = %(chain)s)
ORDER BY r.id
LIMIT 100

-- name: recent_actions
SELECT a.id, a.at, a.actor, a.action, a.job_name, a.run_id, a.detail
FROM {schema}.actions a
WHERE (%(job)s::text IS NULL OR a.job_name = %(job)s)
ORDER BY a.at DESC
LIMIT %(limit)s

-- name: metrics_jobs
-- Per job: the next tick of any of its schedules (schedules_job_due_idx; NULL: manual-only,
-- paused, disabled or orphaned), the last success, one probe of runs_job_history_idx per
-- job: it reads back from the newest run to the newest success, so its cost follows the runs
-- since then, not the history; and how many schedules it has and how many cannot fire, from
-- one pass over pgsched.schedules grouped by job (0 for a job without any).
SELECT j.name,
       CASE WHEN j.enabled AND NOT j.paused AND NOT j.orphaned
            THEN extract(epoch FROM (SELECT s.next_run_at FROM {schema}.schedules s
                                     WHERE s.job_name = j.name AND s.enabled AND NOT s.paused
                                       AND s.error IS NULL AND s.next_run_at IS NOT NULL
                                     ORDER BY s.job_name, s.next_run_at LIMIT 1))::float8
       END AS next_run,
       (SELECT extract(epoch FROM r.finished_at)::float8 FROM {schema}.runs r
        WHERE r.job_name = j.name AND r.status = 'succeeded'
        ORDER BY r.id DESC LIMIT 1) AS last_success,
       coalesce(c.total, 0) AS schedules, coalesce(c.errors, 0) AS schedules_invalid
FROM {schema}.jobs j
LEFT JOIN (
    SELECT x.job_name, count(*)::int AS total,
           count(*) FILTER (WHERE x.error IS NOT NULL)::int AS errors
    FROM {schema}.schedules x
    GROUP BY x.job_name
) c ON c.job_name = j.name
WHERE NOT j.orphaned

-- name: metrics_in_flight
-- Pending and running runs by job, each counted from its partial index.
SELECT 'pending' AS status, r.job_name, count(*)::int AS n
FROM {schema}.runs r WHERE r.status = 'pending' GROUP BY r.job_name
UNION ALL
SELECT 'running' AS status, r.job_name, count(*)::int AS n
FROM {schema}.runs r WHERE r.status = 'running' GROUP BY r.job_name

-- name: request_run_as
-- Run now from the dashboard: a manual request like any other, with who asked.
INSERT INTO {schema}.runs (job_name, params, requested_by)
VALUES (%(name)s, %(params)s, %(actor)s)
RETURNING id

-- name: retry_run
-- Retry from the dashboard: a new manual request of the run's job with the same params.
INSERT INTO {schema}.runs (job_name, params, requested_by)
SELECT r.job_name, r.params, %(actor)s FROM {schema}.runs r WHERE r.id = %(id)s
RETURNING id, job_name

-- name: run_job
SELECT job_name FROM {schema}.runs WHERE id = %(id)s

-- name: record_action
-- The ledger row of an operator's action, in the action's own transaction.
INSERT INTO {schema}.actions (actor, action, job_name, run_id, detail)
VALUES (%(actor)s, %(action)s, %(job)s, %(run)s, %(detail)s)
RETURNING id, at

-- name: pool_failures
-- Runs that failed in the last `window` seconds because their job got no database connection
-- within runner.job_pool_timeout (pgsched.connections.JobPoolTimeout), by runner, with the
-- latest message: a runner that heartbeats while every run fails so is not healthy. Bounded
-- to the window by runs_finished_idx.
SELECT r.runner, count(*) AS failures,
       (array_agg(r.message ORDER BY r.finished_at DESC))[1] AS message
FROM {schema}.runs r
WHERE r.finished_at >= now() - make_interval(secs => %(window)s)
  AND r.status = 'failed'
  AND r.error ->> 'type' = 'pgsched.connections.JobPoolTimeout'
GROUP BY r.runner
ORDER BY r.runner
LIMIT 20
