-- pgsched's whole database protocol, one named query per block (`-- name: x`).
-- `{schema}` is the quoted schema name. Status values are literals, never parameters, so the
-- planner matches the partial indexes even for psycopg's prepared statements.
-- Writes to runs a runner holds (finish, release, unclaim) say `(r.status = 'running') IS
-- TRUE`: the same test, but one the planner cannot match to the partial indexes on running
-- runs. Matched, and with statistics that say few runs are running, it scanned every running
-- entry once per result (83 ms instead of 10 ms for 500 results); unmatched, each result is one
-- primary-key lookup.
-- A claim returns claimed_at = clock_timestamp(), not now() (its transaction's start): the
-- runner pairs it with its monotonic clock read just before sending the statement, and
-- reports when the callable really began from there, never earlier than it did. started_at
-- is a placeholder until the result is written: the claim time, or the tick of a run claimed
-- ahead of its tick (`lookahead`); NULL once a result says it never started. Claims return
-- claimed_at as epoch seconds, the lease as text and params NULL when empty, and results
-- send times as epoch seconds: per run, parsing
-- and formatting timestamps, UUIDs and JSON cost the runner more than a no-op job.

-- name: register_runner
-- A runner announces itself and the code it carries (its code version's job names are in
-- definitions, recorded by its sync); the id is unique per process start.
INSERT INTO {schema}.runners (id, hostname, pid, concurrency, version, code_version)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(concurrency)s, %(version)s, %(code_version)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopping = false

-- name: heartbeat
-- Returns no row when another runner already declared this one dead (it must re-register).
UPDATE {schema}.runners SET heartbeat_at = now(), stopping = %(stopping)s
WHERE id = %(id)s
RETURNING id

-- name: unregister_runner
DELETE FROM {schema}.runners WHERE id = %(id)s

-- name: clock
-- The database clock, read in a round trip of its own right after a tick claim: a tick
-- claimed ahead waits (tick - this) from the reply, so it never starts before its time.
SELECT clock_timestamp() AS clock

-- name: plan_by_index
-- First statement of every claim and result transaction. Each of them walks an index: a
-- claim, a partial index in its order, stopping after `limit` rows; a result write, the
-- primary key once per result. Right after a bulk insert, or while dead index entries pile up
-- under load, the statistics say otherwise, and the planner then preferred to fetch every due
-- row and sort them (to disk, under SKIP LOCKED's LockRows), or to hash-join a batch against
-- every `running` index entry: 25-40 ms instead of 0.4 ms per claim at 100k pending requests,
-- until autovacuum's next ANALYZE; or, for a batch of results, to scan the table and look
-- every result up in the batch. None of these statements needs a sort, a hash join or a
-- sequential scan, so this only takes the bad plans away, for this transaction.
-- And JIT with them: on PostgreSQL 15-17 a node the planner was told to avoid but must keep
-- (the small seq scan of runners in lock_due_jobs) costs 10^10, past every jit_*_above_cost,
-- so a server with JIT on (Debian's, the official image's) compiled each claim: 0.5-3.5 s
-- instead of 0.5 ms. None of these statements is ever worth compiling.
-- And no timeout of the team's (statement_timeout, lock_timeout,
-- idle_in_transaction_session_timeout as database or role defaults) cuts a claim or a result
-- short on a loaded server: they hold a runner's work, and end on their own.
SELECT set_config('enable_sort', 'off', true), set_config('enable_hashjoin', 'off', true),
       set_config('enable_mergejoin', 'off', true), set_config('enable_seqscan', 'off', true),
       set_config('jit', 'off', true), set_config('statement_timeout', '0', true),
       set_config('lock_timeout', '0', true),
       set_config('idle_in_transaction_session_timeout', '0', true)

-- name: lock_due_jobs
-- Step 1 of a tick claim: lock due schedules, and those due within `lookahead` seconds
-- (skipping those another runner holds), and read what the planner needs: the schedule's
-- cron and zone, its job's policies. NO KEY UPDATE of the schedule row only: job rows are not
-- locked (a thousand schedules of one job are claimed by several runners at once), and the
-- KEY SHARE lock every INSERT INTO runs takes on its job through the foreign key is never
-- waited for. Due schedules up to `limit` (the runner's free room); then ticks due within the
-- lookahead, up to `ahead` and to this runner's fair share of them: all those ticks, claimed
-- ahead already or not, divided by the live runners, less those this runner holds. Runners
-- that wake for the same second so split it, whichever commits first. A schedule fires only
-- when it and its job are enabled and not paused, the job is not orphaned and this runner's
-- code defines it.
-- Fair across jobs (DESIGN "Fair to every job"): one walk of schedules_due_idx in tick order
-- let ten thousand due schedules of one job fill every claim while another job's tick
-- waited behind them all. So each job this runner defines (a handful) gets its own queue,
-- one probe of schedules_job_due_idx (job_name, next_run_at): its oldest schedules due now
-- or within the lookahead, at most as many as the claim may take. The claim takes each
-- job's first, then each job's second, and so on, and within a round the job whose last
-- run is oldest first (one probe of runs_job_history_idx per job with work), so with fewer
-- free slots than jobs with work the jobs take turns, claim after claim. The cost follows
-- the jobs defined and what is due, at most (jobs with work) x (limit + ahead) rows; the
-- only sort is of those candidates, which no index can order. Room the queues leave (rows
-- another runner holds) is filled by the walk in tick order (`due_rest`, `ahead_rest`).
-- Separate locking scans, by id, so that no row is locked that the claim will not use
-- (another runner would skip it). Their test is wrapped in IS TRUE (the same test, but no
-- partial index matches it, as in the writes of runs above): matched, and with statistics
-- from before a bulk insert, the planner read the whole due range of schedules_due_idx once
-- per candidate (224 ms at 10k due instead of 2.6); unmatched, each candidate is one
-- primary-key lookup.
WITH ahead_ticks AS (
    SELECT count(*) AS claimed, count(*) FILTER (WHERE r.runner = %(runner)s) AS mine
    FROM {schema}.runs r
    WHERE r.status = 'running' AND r.trigger = 'schedule' AND r.scheduled_for > now()
      AND r.scheduled_for <= now() + make_interval(secs => %(lookahead)s)
), share AS (
    SELECT greatest(0, ceil((a.claimed + (
               SELECT count(*) FROM {schema}.schedules d
               WHERE d.enabled AND NOT d.paused AND d.job_active AND d.error IS NULL
                 AND d.next_run_at IS NOT NULL
                 AND d.next_run_at > now()
                 AND d.next_run_at <= now() + make_interval(secs => %(lookahead)s)))::numeric
               / greatest(1, (SELECT count(*) FROM {schema}.runners
                              WHERE NOT stopping AND concurrency > 0  -- not `jobs run --inline`
                                AND heartbeat_at > now()
                                    - make_interval(secs => %(lease_timeout)s))))
               - a.mine)::int AS n
    FROM ahead_ticks a
), queues AS MATERIALIZED (  -- materialized: each queue is read once, not once per use
    SELECT j.name, j.timezone, j.overlap, j.misfire, j.misfire_grace, j.misfire_cap,
           ARRAY(SELECT s.id FROM {schema}.schedules s
                 WHERE s.job_name >= j.name AND s.job_name <= j.name  -- see claim_pending
                   AND s.enabled AND NOT s.paused AND s.job_active AND s.error IS NULL
                   AND s.next_run_at IS NOT NULL
                   AND s.next_run_at <= now() + make_interval(secs => %(lookahead)s)
                 ORDER BY s.job_name, s.next_run_at
                 LIMIT %(limit)s + least(%(ahead)s, (SELECT n FROM share))) AS ids
    FROM {schema}.definitions d  -- only jobs this runner's code defines
    JOIN {schema}.jobs j ON j.name = d.job_name
    WHERE d.code_version = %(code_version)s AND j.enabled AND NOT j.paused AND NOT j.orphaned
), waiting AS (
    -- The range, not `=`, so that only runs_job_history_idx gives the order (sorts are off):
    -- with `=`, statistics saying the job has most runs made a backward walk of runs_pkey
    -- look cheap, one that reads every later run of other jobs (see job_activity).
    SELECT q.*, (SELECT r.id FROM {schema}.runs r
                 WHERE r.job_name >= q.name AND r.job_name <= q.name
                 ORDER BY r.job_name, r.id DESC LIMIT 1) AS last_run
    FROM queues q
    WHERE cardinality(q.ids) > 0
), due AS (
    SELECT s.job_name AS name, s.key, s.cron AS schedule,
           coalesce(s.timezone, w.timezone) AS timezone, s.next_run_at, w.overlap, w.misfire,
           extract(epoch FROM w.misfire_grace)::float8 AS misfire_grace, w.misfire_cap, s.id
    FROM waiting w
    CROSS JOIN LATERAL unnest(w.ids) WITH ORDINALITY AS c(id, pos)
    JOIN {schema}.schedules s ON s.id = c.id
    WHERE (s.enabled AND NOT s.paused AND s.job_active AND s.error IS NULL
           AND s.next_run_at <= now()) IS TRUE
    ORDER BY c.pos, w.last_run NULLS FIRST, s.next_run_at
    LIMIT %(limit)s
    FOR NO KEY UPDATE OF s SKIP LOCKED
), due_rest AS (
    -- Room left (see claim_pending's `rest`): the walk in tick order, past rows held elsewhere.
    SELECT s.job_name AS name, s.key, s.cron AS schedule,
           coalesce(s.timezone, j.timezone) AS timezone, s.next_run_at, j.overlap, j.misfire,
           extract(epoch FROM j.misfire_grace)::float8 AS misfire_grace, j.misfire_cap, s.id
    FROM {schema}.schedules s
    JOIN {schema}.jobs j ON j.name = s.job_name
    WHERE s.enabled AND NOT s.paused AND s.job_active AND s.error IS NULL
      AND s.next_run_at IS NOT NULL
      AND s.next_run_at <= now()
      AND j.enabled AND NOT j.paused AND NOT j.orphaned
      AND EXISTS (SELECT 1 FROM {schema}.definitions d
                  WHERE d.code_version = %(code_version)s AND d.job_name = s.job_name)
      AND s.id NOT IN (SELECT f.id FROM due f)  -- this transaction holds those already
    ORDER BY s.next_run_at
    LIMIT %(limit)s - (SELECT count(*) FROM due)
    FOR NO KEY UPDATE OF s SKIP LOCKED
), ahead AS (
    -- a queue's due schedules come first in it: a job with a backlog comes last here
    SELECT s.job_name AS name, s.key, s.cron AS schedule,
           coalesce(s.timezone, w.timezone) AS timezone, s.next_run_at, w.overlap, w.misfire,
           extract(epoch FROM w.misfire_grace)::float8 AS misfire_grace, w.misfire_cap, s.id
    FROM waiting w
    CROSS JOIN LATERAL unnest(w.ids) WITH ORDINALITY AS c(id, pos)
    JOIN {schema}.schedules s ON s.id = c.id
    WHERE (s.enabled AND NOT s.paused AND s.job_active AND s.error IS NULL
           AND s.next_run_at > now()
           AND s.next_run_at <= now() + make_interval(secs => %(lookahead)s)) IS TRUE
    ORDER BY c.pos, w.last_run NULLS FIRST, s.next_run_at
    LIMIT least(%(ahead)s, (SELECT n FROM share))
    FOR NO KEY UPDATE OF s SKIP LOCKED
), ahead_rest AS (
    SELECT s.job_name AS name, s.key, s.cron AS schedule,
           coalesce(s.timezone, j.timezone) AS timezone, s.next_run_at, j.overlap, j.misfire,
           extract(epoch FROM j.misfire_grace)::float8 AS misfire_grace, j.misfire_cap, s.id
    FROM {schema}.schedules s
    JOIN {schema}.jobs j ON j.name = s.job_name
    WHERE s.enabled AND NOT s.paused AND s.job_active AND s.error IS NULL
      AND s.next_run_at IS NOT NULL
      AND s.next_run_at > now() AND s.next_run_at <= now() + make_interval(secs => %(lookahead)s)
      AND j.enabled AND NOT j.paused AND NOT j.orphaned
      AND EXISTS (SELECT 1 FROM {schema}.definitions d
                  WHERE d.code_version = %(code_version)s AND d.job_name = s.job_name)
      AND s.id NOT IN (SELECT f.id FROM ahead f)
    ORDER BY s.next_run_at
    LIMIT least(%(ahead)s, (SELECT n FROM share)) - (SELECT count(*) FROM ahead)
    FOR NO KEY UPDATE OF s SKIP LOCKED
), locked AS (
    SELECT * FROM due UNION ALL SELECT * FROM due_rest
    UNION ALL SELECT * FROM ahead UNION ALL SELECT * FROM ahead_rest
)
SELECT l.name, l.key, l.schedule, l.timezone, l.next_run_at, l.overlap, l.misfire,
       l.misfire_grace, l.misfire_cap, now() AS db_now,
       late.alive_runner, late.alive_since, late.changed_at
FROM locked l
-- Why ticks were missed, read only for a schedule late enough to have missed one (past its
-- grace, or a second behind: a later tick may be due too; never one claimed ahead), one row
-- each: the live runner defining the job that started first (a tick before that had no
-- runner; after it, the claim was late), and when the job or schedule row last changed (a
-- resume, an edit). The LIMIT keeps it a LATERAL subquery, so the one-time filter spares
-- the schedules on time.
LEFT JOIN LATERAL (
    SELECT r.id AS alive_runner, r.started_at AS alive_since,
           (SELECT greatest(s.updated_at, j.updated_at)
            FROM {schema}.schedules s JOIN {schema}.jobs j ON j.name = s.job_name
            WHERE s.id = l.id) AS changed_at
    FROM {schema}.runners r
    WHERE l.next_run_at <= now() - make_interval(secs => least(1.0, l.misfire_grace))
      AND r.concurrency > 0 AND r.heartbeat_at > now() - make_interval(secs => %(lease_timeout)s)
      AND EXISTS (SELECT 1 FROM {schema}.definitions d
                  WHERE d.code_version = r.code_version AND d.job_name = l.name)
    ORDER BY r.started_at
    LIMIT 1
) late ON true

-- name: job_activity
-- Step 2, once the schedule rows are locked: a new statement sees what other runners
-- committed before they let go of those rows, so the overlap policy cannot race. Per
-- schedule (job, key): `busy`, a run of it is running; `queued`, runs of it are waiting (new
-- ticks line up behind them). Manual requests belong to the default schedule. One index
-- probe per schedule (LATERAL ... LIMIT 1): as EXISTS, the planner hashed every pending run
-- once per claim, so a backlog of 100k requests made each tick claim read 100k index
-- entries. The job is matched by a range (`>= name AND <= name`), not `=`: with `=` the ORDER
-- BY is redundant, and with statistics that say nothing is pending the planner bet on walking
-- runs_pending_idx to a first match (7.6 ms instead of 0.17 for 100 jobs behind 1,000
-- pending requests, found by bench/scale.py); with the range only the per-schedule partial
-- indexes give the order (sorts are off), so each probe reads one entry of its schedule.
SELECT j.name, j.key, busy.yes IS NOT NULL AS busy, queued.yes IS NOT NULL AS queued
FROM unnest(%(names)s::text[], %(keys)s::text[]) AS j(name, key)
LEFT JOIN LATERAL (SELECT true AS yes FROM {schema}.runs r
                   WHERE r.job_name >= j.name AND r.job_name <= j.name
                     AND r.schedule_key = j.key AND r.status = 'running'
                   ORDER BY r.job_name, r.schedule_key LIMIT 1) busy ON true
LEFT JOIN LATERAL (SELECT true AS yes FROM {schema}.runs r
                   WHERE r.job_name >= j.name AND r.job_name <= j.name
                     AND r.schedule_key = j.key AND r.status = 'pending'
                   ORDER BY r.job_name, r.schedule_key LIMIT 1) queued ON true

-- name: record_ticks
-- Step 3, same transaction: advance each schedule's next_run_at (and the job's, for its
-- default schedule: pgsched.jobs.next_run_at is the code/profile schedule's next tick; a job
-- row someone is writing at this instant (a pause, a sync) is skipped, so a claim never waits
-- for a job row while it holds schedule rows, the lock order of those writers: job, then its
-- schedules. Its copy catches up at the next tick.), and
-- write one row per tick with the schedule's params (all lists as JSON, like finish_runs).
-- A schedule the planner could not read gets `error` and stops. Rows this runner starts now
-- are 'running' under a fresh lease; the unique key refuses a second row per tick.
-- A schedule key removed and added again (within the lookahead) finds its tick's row taken by
-- the removed schedule's run, cancelled before it started (migration 0007's trigger): that
-- row is revived as the new schedule's tick (ON CONFLICT ... DO UPDATE, under the same
-- unique key as before, which older runners' DO NOTHING still infers). While that cancel is
-- still with the runner holding the run (`held`: it may yet start it, if the request came too
-- late), the schedule does not move past the tick: it is claimed again once the run's end is
-- written, revived if it never started. DO UPDATE locks the conflicting row even where its
-- WHERE refuses it (DO NOTHING did not): a claim may so wait for a run row another
-- transaction writes, while holding schedule rows; unclaim_ticks takes runs, then schedules,
-- so the two could deadlock (40P01, rare: a tick given back at the instant it is claimed
-- again); the claim then fails, is rolled back whole, and the next claim round retries it.
WITH plans AS (
    SELECT * FROM json_to_recordset(%(jobs)s::json)
        AS a(name text, key text, next_run_at timestamptz, error text)
), ticks AS (
    SELECT * FROM json_to_recordset(%(ticks)s::json)
        AS t(job_name text, key text, tick timestamptz, status text, message text)
), held AS (
    SELECT t.job_name, t.key, min(t.tick) AS tick
    FROM ticks t
    JOIN {schema}.runs o ON o.job_name = t.job_name AND o.schedule_key = t.key
                        AND o.scheduled_for = t.tick AND o.trigger = 'schedule'
    JOIN {schema}.schedules s ON s.job_name = t.job_name AND s.key = t.key
    WHERE o.status = 'running' AND o.cancel_requested_at <= s.created_at
    GROUP BY t.job_name, t.key
), next AS (
    SELECT a.name, a.key, least(a.next_run_at, h.tick) AS next_run_at, a.error
    FROM plans a LEFT JOIN held h ON h.job_name = a.name AND h.key = a.key
), advanced AS (
    UPDATE {schema}.schedules s SET next_run_at = a.next_run_at, error = a.error
    FROM next a
    WHERE s.job_name = a.name AND s.key = a.key
), mirrored AS (
    UPDATE {schema}.jobs j SET next_run_at = a.next_run_at
    FROM next a
    WHERE j.name = a.name AND a.key = 'default'
      AND j.name IN (SELECT x.name FROM {schema}.jobs x  -- never wait for a job row: see below
                     WHERE x.name IN (SELECT name FROM plans WHERE key = 'default')
                     FOR NO KEY UPDATE SKIP LOCKED)
)
INSERT INTO {schema}.runs AS r (job_name, schedule_key, trigger, status, scheduled_for,
                               run_after, started_at, finished_at, runner, lease, message,
                               params)
SELECT t.job_name, t.key, 'schedule', t.status, t.tick, t.tick,
       CASE WHEN t.status = 'running' THEN greatest(clock_timestamp(), t.tick) END,
       CASE WHEN t.status IN ('skipped', 'failed') THEN now() END,
       CASE WHEN t.status <> 'pending' THEN %(runner)s END,
       CASE WHEN t.status = 'running' THEN gen_random_uuid() END,
       t.message,
       coalesce((SELECT s.params FROM {schema}.schedules s
                 WHERE s.job_name = t.job_name AND s.key = t.key), '{}')
FROM ticks t
WHERE NOT EXISTS (SELECT 1 FROM held h
                  WHERE h.job_name = t.job_name AND h.key = t.key AND t.tick >= h.tick)
ON CONFLICT (job_name, schedule_key, scheduled_for) WHERE trigger = 'schedule'
DO UPDATE SET status = excluded.status, run_after = excluded.run_after,
              created_at = excluded.created_at, started_at = excluded.started_at,
              finished_at = excluded.finished_at, runner = excluded.runner,
              lease = excluded.lease, message = excluded.message, params = excluded.params,
              requested_by = excluded.requested_by, cancel_requested_at = NULL,
              cancelled_by = NULL
-- revived only: a run of an earlier schedule under this key (cancelled no later than this
-- schedule was created) that never started
WHERE r.status = 'cancelled' AND (r.started_at IS NULL OR r.started_at > r.finished_at)
  AND r.cancel_requested_at <= (SELECT s.created_at FROM {schema}.schedules s
                                WHERE s.job_name = r.job_name AND s.key = r.schedule_key)
RETURNING r.id, r.job_name, r.schedule_key, r.trigger, r.status, r.scheduled_for, r.attempt,
          NULLIF(r.params, '{}') AS params, r.lease::text AS lease, r.started_at,
          extract(epoch FROM clock_timestamp())::float8 AS claimed_at

-- name: claim_pending
-- A request claim, one statement (sent with BEGIN and COMMIT in one round trip): lock the
-- pending runs whose time has come and start those whose job allows overlap. Runs of the
-- other jobs come back still `pending`, for the job-locking claim below.
-- Fair across jobs, as lock_due_jobs: one walk of runs_pending_idx let ten thousand requests
-- to one job fill every claim while another job's request waited behind them all. So each
-- job this runner defines that has work (one index probe each) gets an equal share of the
-- claim, locked straight from its own queue, oldest first (runs_pending_job_due_idx, by a
-- range on the job so only that index gives the order: see job_activity); the claim takes
-- each job's oldest, then each job's second, and so on, the oldest first within a round.
-- One walk per job and no second read by id: a drain of one job costs what the plain walk
-- did. A share is at least one run, so with more jobs than room the round is cut by age;
-- the few rows locked beyond `limit` stay pending (locked only until this commits).
WITH working AS MATERIALIZED (
    SELECT j.name, j.overlap = 'allow' AS overlap_allowed
    -- only jobs this runner's code defines: others wait, visibly, for a runner that has them
    FROM {schema}.definitions d
    JOIN {schema}.jobs j ON j.name = d.job_name
    WHERE d.code_version = %(code_version)s
      AND EXISTS (SELECT 1 FROM {schema}.runs r
                  WHERE r.job_name >= j.name AND r.job_name <= j.name
                    AND r.status = 'pending' AND r.run_after <= now())
), share AS (
    SELECT ((%(limit)s + count(*) - 1) / greatest(count(*), 1))::int AS runs FROM working
), queued AS (
    SELECT c.id, c.job_name, c.schedule_key, c.run_after, w.overlap_allowed
    FROM working w
    CROSS JOIN LATERAL (
        SELECT r.id, r.job_name, r.schedule_key, r.run_after
        FROM {schema}.runs r
        WHERE r.job_name >= w.name AND r.job_name <= w.name
          AND r.status = 'pending' AND r.run_after <= now()
          -- a hint only (step 3 decides): keeps a backlog of one busy job from filling
          -- every batch
          AND (w.overlap_allowed OR NOT EXISTS (
                  SELECT 1 FROM {schema}.runs x
                  WHERE x.job_name = r.job_name AND x.schedule_key = r.schedule_key
                    AND x.status = 'running'))
        ORDER BY r.job_name, r.run_after, r.id
        LIMIT (SELECT runs FROM share)
        FOR UPDATE OF r SKIP LOCKED
    ) c
), fair AS (
    SELECT q.id, q.job_name, q.schedule_key, q.overlap_allowed
    FROM (SELECT q.*, row_number() OVER (PARTITION BY q.job_name
                                         ORDER BY q.run_after, q.id) AS pos
          FROM queued q) q
    ORDER BY q.pos, q.run_after, q.id
    LIMIT %(limit)s
), rest AS (
    -- Room left: a job may have less than its share, and runners claiming at once find the
    -- same first rows (one locked them, the others skip them). Without this the others came
    -- back empty and backed off (a drain by 2 runners went no faster than by 1). The walk
    -- in plain order fills it, past rows held elsewhere; with the room full it never runs.
    -- Only jobs that filled their share can have more: the others' every claimable run is
    -- in their share already (a busy exclusive job's backlog is not walked twice).
    SELECT r.id, r.job_name, r.schedule_key, j.overlap = 'allow' AS overlap_allowed
    FROM {schema}.runs r
    JOIN {schema}.jobs j ON j.name = r.job_name
    WHERE r.status = 'pending' AND r.run_after <= now()
      AND r.job_name IN (SELECT q.job_name FROM queued q GROUP BY q.job_name
                         HAVING count(*) >= (SELECT runs FROM share))
      AND (j.overlap = 'allow' OR NOT EXISTS (
              SELECT 1 FROM {schema}.runs x
              WHERE x.job_name = r.job_name AND x.schedule_key = r.schedule_key
                AND x.status = 'running'))
      AND r.id NOT IN (SELECT q.id FROM queued q)  -- this transaction holds those already
    ORDER BY r.run_after, r.id
    LIMIT %(limit)s - (SELECT count(*) FROM fair)
    FOR UPDATE OF r SKIP LOCKED
), locked AS (
    SELECT * FROM fair UNION ALL SELECT * FROM rest
), started AS (
    UPDATE {schema}.runs r
    SET status = 'running', runner = %(runner)s, lease = gen_random_uuid(),
        started_at = clock_timestamp()
    FROM locked l
    WHERE r.id = l.id AND l.overlap_allowed
    RETURNING r.id, r.job_name, r.schedule_key, r.trigger, r.status, r.scheduled_for,
              r.attempt, NULLIF(r.params, '{}') AS params, r.lease::text AS lease, r.started_at,
              extract(epoch FROM clock_timestamp())::float8 AS claimed_at
)
SELECT * FROM started
UNION ALL
SELECT l.id, l.job_name, l.schedule_key, NULL::text, 'pending', NULL::timestamptz, NULL::int,
       NULL::jsonb, NULL::text, NULL::timestamptz, NULL::float8
FROM locked l WHERE NOT l.overlap_allowed

-- name: relock_pending
-- Step 1 of the claim for runs of jobs that do not allow overlap (claim_pending left them
-- pending): lock them again, unless another runner got to them meanwhile.
SELECT id, job_name, schedule_key FROM {schema}.runs
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'pending'
ORDER BY id
FOR UPDATE SKIP LOCKED

-- name: lock_jobs
-- Step 2, for those jobs: hold their rows, as a tick claim does, so a
-- request and a tick (or two runners) cannot both start a run of one job.
SELECT name FROM {schema}.jobs WHERE name = ANY(%(names)s::text[])
ORDER BY name
FOR NO KEY UPDATE SKIP LOCKED

-- name: lock_schedules
-- Step 3: hold the rows of the schedules those runs belong to (a request belongs to the
-- default schedule), as a tick claim does, so a request and a tick of one schedule cannot
-- both start. `held`: locked here, or there is no such row (a job without a code schedule,
-- a deleted schedule's retry) and the job row's lock is enough.
SELECT g.name, g.key, s.id IS NULL OR l.id IS NOT NULL AS held
FROM unnest(%(names)s::text[], %(keys)s::text[]) AS g(name, key)
LEFT JOIN {schema}.schedules s ON s.job_name = g.name AND s.key = g.key
LEFT JOIN LATERAL (SELECT x.id FROM {schema}.schedules x WHERE x.id = s.id
                   FOR NO KEY UPDATE SKIP LOCKED) l ON true

-- name: running_jobs
-- Step 4, after those locks: which of those schedules have a run running.
SELECT DISTINCT job_name, schedule_key FROM {schema}.runs
WHERE status = 'running' AND job_name = ANY(%(names)s::text[])

-- name: start_pending
-- Step 5: the chosen runs start under a fresh lease.
UPDATE {schema}.runs
SET status = 'running', runner = %(runner)s, lease = gen_random_uuid(),
    started_at = clock_timestamp()
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'pending'
RETURNING id, job_name, schedule_key, trigger, status, scheduled_for, attempt,
          NULLIF(params, '{}') AS params, lease::text AS lease, started_at,
          extract(epoch FROM clock_timestamp())::float8 AS claimed_at

-- name: release_runs
-- Prefetched runs this runner will not start after all (shutdown, or held too long behind
-- slow runs): back to pending, for any runner, unless the lease moved on meanwhile.
UPDATE {schema}.runs r
SET status = 'pending', runner = NULL, lease = NULL, started_at = NULL
FROM unnest(%(ids)s::bigint[], %(leases)s::uuid[]) AS f(id, lease)
WHERE r.id = f.id AND r.lease = f.lease AND (r.status = 'running') IS TRUE
RETURNING r.id

-- name: unclaim_ticks
-- Ticks claimed ahead that never started (their runner is shutting down): as if never
-- claimed. The rows go, and each schedule's next_run_at (and the job's, for its default one)
-- moves back to its earliest such tick, so a live runner claims it at its time (the trigger
-- on schedules wakes them), or the next one to start applies the misfire policy to it.
-- Lease-checked like every write of a claimed run.
WITH gone AS (
    DELETE FROM {schema}.runs r
    USING json_to_recordset(%(runs)s::json) AS f(id bigint, lease uuid)
    WHERE r.id = f.id AND r.lease = f.lease AND (r.status = 'running') IS TRUE
    RETURNING r.id, r.job_name, r.schedule_key, r.scheduled_for
), earliest AS (
    SELECT job_name, schedule_key, min(scheduled_for) AS tick FROM gone
    GROUP BY job_name, schedule_key
), back AS (
    -- a row edited meanwhile (next_run_at NULL: to be validated) or broken keeps that state
    UPDATE {schema}.schedules s SET next_run_at = least(s.next_run_at, g.tick)
    FROM earliest g
    WHERE s.job_name = g.job_name AND s.key = g.schedule_key
      AND s.next_run_at IS NOT NULL AND s.error IS NULL
), back_default AS (
    UPDATE {schema}.jobs j SET next_run_at = least(j.next_run_at, g.tick)
    FROM earliest g
    WHERE j.name = g.job_name AND g.schedule_key = 'default'
      AND j.name IN (SELECT x.name FROM {schema}.jobs x  -- never wait: see record_ticks
                     WHERE x.name IN (SELECT job_name FROM earliest
                                      WHERE schedule_key = 'default')
                     FOR NO KEY UPDATE SKIP LOCKED)
)
SELECT id FROM gone

-- name: notify_runners
SELECT pg_notify({channel}, 'run')

-- name: seconds_until_due
-- How long a runner may sleep, by the database clock: until the earliest due tick, and until
-- the earliest pending run (NULL: none). Each is the first entry of a partial index (run with
-- plan_by_index: a min() could otherwise be planned as a walk of a whole backlog).
-- Only work of jobs this runner's code defines counts.
SELECT extract(epoch FROM (SELECT s.next_run_at FROM {schema}.schedules s
                           JOIN {schema}.jobs j ON j.name = s.job_name
                           WHERE s.enabled AND NOT s.paused AND s.job_active
                             AND s.error IS NULL AND s.next_run_at IS NOT NULL
                             AND j.enabled AND NOT j.paused AND NOT j.orphaned
                             AND EXISTS (SELECT 1 FROM {schema}.definitions d
                                         WHERE d.code_version = %(code_version)s
                                           AND d.job_name = s.job_name)
                           ORDER BY s.next_run_at LIMIT 1) - clock_timestamp())::float8 AS ticks,
       extract(epoch FROM (SELECT run_after FROM {schema}.runs r WHERE status = 'pending'
                             AND EXISTS (SELECT 1 FROM {schema}.definitions d
                                         WHERE d.code_version = %(code_version)s
                                           AND d.job_name = r.job_name)
                           ORDER BY run_after LIMIT 1) - clock_timestamp())::float8 AS pending

-- name: finish_runs
-- One statement per flush for a batch of results, passed as one JSON array of objects:
-- encoding nine parallel arrays element by element cost the runner more than the rest of a
-- no-op run. A note the claim left (misfire, retry) is kept beside the job's own message. The
-- lease check means a runner that lost its lease (declared dead, or timed out) can never
-- overwrite a final state already written.
UPDATE {schema}.runs r
SET status = f.status,
    -- no start reported: it never started (cancelled while it waited for its tick or a slot,
    -- a job this code does not define), and the claim's placeholder goes: a tick claimed
    -- ahead had its future tick there
    started_at = to_timestamp(f.started_at),
    finished_at = coalesce(to_timestamp(f.finished_at), now()),
    message = CASE WHEN r.message IS NULL THEN f.message
                   WHEN f.message IS NULL THEN r.message
                   ELSE f.message || ' [' || r.message || ']' END,
    error = f.error, stats = f.stats, data = f.data, lease = NULL
FROM json_to_recordset(%(results)s::json)
     AS f(id bigint, lease uuid, status text, started_at float8, finished_at float8,
          message text, error jsonb, stats jsonb, data jsonb)
WHERE r.id = f.id AND r.lease = f.lease AND (r.status = 'running') IS TRUE
RETURNING r.id

-- name: run_states
-- Why results were refused: each run's state now (a missing id: the run is not in this
-- database, e.g. written to a primary that was lost in a failover).
SELECT id, status, runner, message FROM {schema}.runs WHERE id = ANY(%(ids)s::bigint[])

-- name: reap_lost_runners
-- Runners silent past the lease timeout are dead: fail their runs (the retry trigger applies),
-- and remove them. SKIP LOCKED lets several live runners reap at once without waiting.
WITH dead AS (
    SELECT id FROM {schema}.runners
    WHERE heartbeat_at < now() - make_interval(secs => %(lease_timeout)s)
      -- after a database restart, give every runner one lease period to reconnect first
      AND pg_postmaster_start_time() < now() - make_interval(secs => %(lease_timeout)s)
    FOR UPDATE SKIP LOCKED
), lost AS (
    UPDATE {schema}.runs r
    SET status = 'failed', finished_at = now(), lease = NULL,
        message = format('runner lost: %%s stopped heartbeating (lease timeout %%s s)',
                         r.runner, %(lease_timeout)s)
    FROM dead d
    WHERE r.status = 'running' AND r.runner = d.id
    RETURNING r.id
), removed AS (
    DELETE FROM {schema}.runners WHERE id IN (SELECT id FROM dead) RETURNING id
)
SELECT (SELECT array_agg(id) FROM removed) AS runners, (SELECT array_agg(id) FROM lost) AS runs

-- name: reap_ownerless_runs
-- Running runs whose runner row is gone altogether (removed by hand, or reaped mid-claim).
UPDATE {schema}.runs r
SET status = 'failed', finished_at = now(), lease = NULL,
    message = format('runner lost: %%s is no longer registered', coalesce(r.runner, '?'))
WHERE r.status = 'running'
  AND NOT EXISTS (SELECT 1 FROM {schema}.runners w WHERE w.id = r.runner)
  AND r.started_at < now() - make_interval(secs => %(lease_timeout)s)
  AND pg_postmaster_start_time() < now() - make_interval(secs => %(lease_timeout)s)
RETURNING r.id

-- name: lock_run
-- Before cancel_run, in its transaction: wait for whoever writes the run now (a runner
-- finishing it), so that cancel_run, a statement of its own, sees what that writer
-- committed: a failure, and the retry the failure created.
SELECT id FROM {schema}.runs WHERE id = %(id)s FOR UPDATE

-- name: cancel_run
-- Cancel a run: a pending one at once; a running one is asked to stop (its runner, woken by
-- the NOTIFY of migration 0006, tells the job and ends it `cancelled`; no retry follows it,
-- whatever it ends as: migration 0009). A failed run whose retry is waiting or running: that
-- retry (a cancel that arrives just after the failure still ends the chain: lock_run first).
-- Returns the status the cancelled run had; no row when there was nothing left to cancel
-- (or no such run). The retry is found through the partial indexes of pending and running
-- runs of the run's schedule, not by walking the runs after it.
WITH asked AS (
    SELECT id, job_name, schedule_key, status, attempt, coalesce(retry_of, id) AS chain
    FROM {schema}.runs WHERE id = %(id)s
), target AS (
    SELECT id, status FROM {schema}.runs WHERE id = %(id)s FOR UPDATE
), retry AS (
    SELECT r.id, r.status
    FROM {schema}.runs r
    JOIN asked a ON r.job_name = a.job_name AND r.schedule_key = a.schedule_key
    WHERE a.status = 'failed' AND (r.status = 'pending' OR r.status = 'running')
      AND r.retry_of = a.chain AND r.attempt > a.attempt
    FOR UPDATE OF r
), t AS (
    SELECT id, status FROM target UNION ALL SELECT id, status FROM retry
)
UPDATE {schema}.runs r
SET status = CASE WHEN t.status = 'pending' THEN 'cancelled' ELSE r.status END,
    finished_at = CASE WHEN t.status = 'pending' THEN now() ELSE r.finished_at END,
    message = CASE WHEN t.status = 'pending'
                   THEN format('cancelled by %%s before it started', %(by)s::text)
                   ELSE r.message END,
    cancel_requested_at = coalesce(r.cancel_requested_at, now()),
    cancelled_by = coalesce(r.cancelled_by, %(by)s::text)
FROM t
WHERE r.id = t.id AND t.status IN ('pending', 'running')
RETURNING t.status AS was

-- name: run_status
SELECT status FROM {schema}.runs WHERE id = %(id)s

-- name: cancel_requests
-- Runs this runner holds that someone asked to cancel (a partial index of few rows).
SELECT id, cancelled_by, cancel_requested_at FROM {schema}.runs
WHERE status = 'running' AND runner = %(runner)s AND cancel_requested_at IS NOT NULL

-- name: held_runs
-- The runs the database says this runner holds (running, under its lease).
SELECT id FROM {schema}.runs WHERE status = 'running' AND runner = %(runner)s

-- name: fail_stranded_runs
-- Runs this (live) runner holds but does not know of: a claim that committed while its
-- acknowledgement was lost. Nothing else would ever finish them.
UPDATE {schema}.runs
SET status = 'failed', finished_at = now(), lease = NULL,
    message = 'claimed but never started: the claim committed while its reply was lost'
WHERE status = 'running' AND runner = %(runner)s AND id <> ALL(%(known)s::bigint[])
  AND started_at < now() - interval '10 seconds'
RETURNING id

-- name: prune_history
-- Retention: delete old finished runs in bounded batches. Never re-opens a tick: next_run_at
-- only moves forward, so a pruned tick can never be claimed again.
WITH old AS (
    SELECT id FROM {schema}.runs
    WHERE finished_at IS NOT NULL AND finished_at < now() - make_interval(secs => %(keep_seconds)s)
    ORDER BY finished_at
    LIMIT %(batch)s
)
DELETE FROM {schema}.runs r USING old WHERE r.id = old.id

-- name: lock_sync
-- Serialises concurrent syncs (N runners starting at once) for the length of the transaction.
-- A table lock only roles with UPDATE on sync_lock (the owner, `grant runner`) can take, not a
-- global advisory key any role that can connect could hold (sql/0003_topology.sql).
LOCK TABLE {schema}.sync_lock IN EXCLUSIVE MODE

-- name: synced_jobs
-- Every synced column, in the form the store compares definitions in (seconds as float8,
-- tags as a JSON list), so a re-sync writes only the rows that changed.
SELECT name, extension, description, schedule, timezone, enabled,
       extract(epoch FROM timeout)::float8 AS timeout, max_attempts,
       extract(epoch FROM retry_backoff)::float8 AS retry_backoff, overlap, misfire,
       extract(epoch FROM misfire_grace)::float8 AS misfire_grace, misfire_cap,
       to_jsonb(tags) AS tags, isolation, overrides, origin, next_run_at, orphaned
FROM {schema}.jobs

-- name: db_now
SELECT now() AS db_now

-- name: upsert_jobs
-- The new and changed definitions (with overrides applied), as one JSON array. `paused` is
-- never touched; next_run_at is replaced only when the schedule changed (a non-NULL
-- next_run_at), so re-syncing never re-opens or skips a tick. `synced_at`: the last sync that
-- wrote the row.
INSERT INTO {schema}.jobs AS j (name, extension, description, schedule, timezone, enabled,
                               timeout, max_attempts, retry_backoff, overlap, misfire,
                               misfire_grace, misfire_cap, tags, isolation, overrides, origin,
                               next_run_at, orphaned, synced_at, defined_by)
SELECT d.name, d.extension, d.description, d.schedule, d.timezone, d.enabled,
       make_interval(secs => d.timeout), d.max_attempts, make_interval(secs => d.retry_backoff),
       d.overlap, d.misfire, make_interval(secs => d.misfire_grace), d.misfire_cap,
       d.tags, d.isolation, d.overrides, d.origin, d.next_run_at,
       false, now(), %(code_version)s
FROM json_to_recordset(%(jobs)s::json)
     AS d(name text, extension text, description text, schedule text, timezone text,
          enabled boolean, timeout float8, max_attempts int, retry_backoff float8, overlap text,
          misfire text, misfire_grace float8, misfire_cap int, tags text[], isolation text,
          overrides jsonb, origin text, next_run_at timestamptz)
ON CONFLICT (name) DO UPDATE SET
    extension = EXCLUDED.extension, description = EXCLUDED.description,
    schedule = EXCLUDED.schedule, timezone = EXCLUDED.timezone, enabled = EXCLUDED.enabled,
    timeout = EXCLUDED.timeout, max_attempts = EXCLUDED.max_attempts,
    retry_backoff = EXCLUDED.retry_backoff, overlap = EXCLUDED.overlap,
    misfire = EXCLUDED.misfire, misfire_grace = EXCLUDED.misfire_grace,
    misfire_cap = EXCLUDED.misfire_cap, tags = EXCLUDED.tags, isolation = EXCLUDED.isolation,
    overrides = EXCLUDED.overrides,
    origin = EXCLUDED.origin, orphaned = false, synced_at = now(),
    defined_by = EXCLUDED.defined_by,
    next_run_at = CASE WHEN EXCLUDED.next_run_at IS NOT NULL OR EXCLUDED.schedule IS NULL
                       THEN EXCLUDED.next_run_at ELSE j.next_run_at END,
    updated_at = CASE WHEN (j.schedule, j.timezone, j.enabled, j.timeout, j.max_attempts,
                            j.overlap, j.misfire, j.isolation, j.overrides)
                           IS DISTINCT FROM
                           (EXCLUDED.schedule, EXCLUDED.timezone, EXCLUDED.enabled,
                            EXCLUDED.timeout, EXCLUDED.max_attempts, EXCLUDED.overlap,
                            EXCLUDED.misfire, EXCLUDED.isolation, EXCLUDED.overrides)
                      THEN now() ELSE j.updated_at END

-- name: has_definitions
-- Whether all of this code version's job names are recorded (by its first sync; again when
-- a job row was deleted with its definitions, or before a runner of it registers).
SELECT count(*) >= %(count)s AS recorded
FROM {schema}.definitions WHERE code_version = %(code_version)s

-- name: record_definitions
-- The job names a code version defines, recorded once per version (the runner's claims
-- take only these jobs).
INSERT INTO {schema}.definitions (code_version, job_name)
SELECT %(code_version)s, n FROM unnest(%(names)s::text[]) AS n
WHERE EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.name = n)
ON CONFLICT DO NOTHING

-- name: adopt_defined_jobs
-- A runner of this code version registers: jobs its code defines that were orphaned
-- meanwhile (it was declared dead, or another runner left while it was away) are not
-- orphans. next_run_at stays where it was, so the gap goes through the misfire policy.
UPDATE {schema}.jobs j SET orphaned = false, updated_at = now()
WHERE j.orphaned
  AND EXISTS (SELECT 1 FROM {schema}.definitions d
              WHERE d.code_version = %(code_version)s AND d.job_name = j.name)
RETURNING j.name

-- name: orphan_undefined_jobs
-- Jobs that neither the syncing code (code_version; NULL when nothing syncs) nor any live
-- runner defines are orphaned: kept with their history, never fired, their pending runs left
-- waiting. Nothing is orphaned while a runner from before revision 0005 lives (it records no
-- definitions), nor when no runner lives and nothing syncs: a full stop removes no code.
WITH live AS (
    SELECT code_version FROM {schema}.runners
    WHERE heartbeat_at >= now() - make_interval(secs => %(lease_timeout)s)
)
UPDATE {schema}.jobs j SET orphaned = true, updated_at = now()
WHERE NOT j.orphaned
  AND (%(code_version)s::text IS NOT NULL OR EXISTS (SELECT 1 FROM live))
  AND NOT EXISTS (SELECT 1 FROM live WHERE code_version IS NULL)
  AND NOT EXISTS (SELECT 1 FROM {schema}.definitions d
                  WHERE d.job_name = j.name
                    AND (d.code_version = %(code_version)s
                         OR d.code_version IN (SELECT code_version FROM live)))
RETURNING j.name

-- name: defined_elsewhere
-- Which of these jobs live runners of other code versions define too (a sync changing one of
-- them flips what those runners run: it says so).
SELECT DISTINCT d.job_name
FROM {schema}.definitions d
JOIN {schema}.runners w ON w.code_version = d.code_version
WHERE d.job_name = ANY(%(names)s::text[]) AND d.code_version <> %(code_version)s
  AND w.heartbeat_at >= now() - make_interval(secs => %(lease_timeout)s)

-- name: list_jobs
-- With each job's schedules: how many, how many cannot fire (`error`), and the next tick
-- over all of them (next_run_at is the code/profile schedule's).
SELECT j.name, j.extension, j.description, j.schedule, j.timezone, j.enabled, j.paused,
       j.orphaned, j.next_run_at, j.tags, j.overrides,
       last.status AS last_status, last.finished_at AS last_finished_at,
       coalesce(s.total, 0) AS schedules, coalesce(s.errors, 0) AS schedule_errors,
       s.next_tick
FROM {schema}.jobs j
LEFT JOIN LATERAL (
    SELECT status, finished_at FROM {schema}.runs r
    WHERE r.job_name = j.name AND r.status <> 'pending'
    ORDER BY r.id DESC LIMIT 1
) last ON true
LEFT JOIN LATERAL (
    SELECT count(*)::int AS total, count(*) FILTER (WHERE x.error IS NOT NULL)::int AS errors,
           min(x.next_run_at) FILTER (WHERE x.enabled AND NOT x.paused AND x.error IS NULL)
               AS next_tick
    FROM {schema}.schedules x WHERE x.job_name = j.name
) s ON true
ORDER BY j.name

-- name: get_job
SELECT name, extension, description, schedule, timezone, enabled, paused, orphaned,
       extract(epoch FROM timeout)::float8 AS timeout, max_attempts,
       extract(epoch FROM retry_backoff)::float8 AS retry_backoff, overlap, misfire,
       extract(epoch FROM misfire_grace)::float8 AS misfire_grace, misfire_cap, tags, isolation,
       overrides, origin, next_run_at, created_at, updated_at, synced_at, defined_by
FROM {schema}.jobs WHERE name = %(name)s

-- name: set_paused
UPDATE {schema}.jobs SET paused = %(paused)s, updated_at = now() WHERE name = %(name)s
RETURNING name

-- name: request_run
INSERT INTO {schema}.runs (job_name, params) VALUES (%(name)s, %(params)s)
RETURNING id

-- name: insert_inline_run
-- `jobs run --inline`: recorded like any run, owned by the CLI process for its duration.
INSERT INTO {schema}.runs (job_name, params, status, started_at, runner, lease)
VALUES (%(name)s, %(params)s, 'running', clock_timestamp(), %(runner)s, gen_random_uuid())
RETURNING id, job_name, schedule_key, trigger, status, scheduled_for, attempt,
          NULLIF(params, '{}') AS params, lease::text AS lease, started_at,
          extract(epoch FROM clock_timestamp())::float8 AS claimed_at

-- name: get_run
SELECT id, job_name, trigger, status, scheduled_for, created_at, started_at, finished_at,
       extract(epoch FROM duration)::float8 AS duration, runner, attempt, retry_of, params,
       message, error, stats, data
FROM {schema}.runs WHERE id = %(id)s

-- name: history
SELECT id, job_name, trigger, status, scheduled_for, created_at, started_at, finished_at,
       extract(epoch FROM duration)::float8 AS duration, runner, attempt, retry_of, params,
       message, error, stats, data
FROM {schema}.runs
WHERE (%(name)s::text IS NULL OR job_name = %(name)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY id DESC
LIMIT %(limit)s

-- name: live_runners
SELECT id, hostname, pid, concurrency, version, code_version, started_at, heartbeat_at,
       stopping, extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       (SELECT count(*) FROM {schema}.runs r WHERE r.status = 'running' AND r.runner = w.id)
           AS running
FROM {schema}.runners w
WHERE heartbeat_at >= now() - make_interval(secs => %(lease_timeout)s)
  AND concurrency > 0  -- not a `jobs run --inline` process
ORDER BY started_at

-- name: lock_migrate
-- Serialises concurrent migrations for the length of their one transaction. EXCLUSIVE allows
-- readers' ACCESS SHARE (a runner reading the revision) and conflicts with every mode that needs
-- write access to the table: only its owner can hold the migration back. Transaction-scoped, so
-- a transaction pooler cannot strand it on a server connection.
LOCK TABLE {schema}.alembic_version IN EXCLUSIVE MODE

-- name: bootstrap_schema
-- The first migration's lock must exist before the schema does: create the schema and the
-- (empty) version table, as alembic would. Concurrent first migrations may collide on the
-- catalogs' unique keys; the loser retries and finds both (pgsched/locks.py).
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.alembic_version (
    version_num varchar(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
)

-- name: schema_bootstrapped
SELECT to_regclass(%(table)s) IS NOT NULL AS present

-- name: lock_holders
-- Who holds a lock on `relation` that a sync or a migration waits for: sessions holding any
-- mode but ACCESS SHARE (the only one that conflicts with neither), or queued for one ahead of
-- us (a request waiting in the lock queue blocks later requests too), oldest transaction first.
SELECT l.pid, a.usename AS "user", a.application_name, a.state, a.client_addr::text,
       l.mode, l.granted, a.xact_start,
       extract(epoch FROM (clock_timestamp() - a.xact_start))::float8 AS for_seconds
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = to_regclass(%(relation)s)
  AND l.mode <> 'AccessShareLock' AND l.pid IS DISTINCT FROM pg_backend_pid()
ORDER BY l.granted DESC, a.xact_start NULLS LAST

-- name: get_lock_timeout
SELECT current_setting('lock_timeout') AS lock_timeout

-- name: set_lock_timeout
-- Transaction-local (set_config(..., true)): safe through a transaction pooler.
SELECT set_config('lock_timeout', %(value)s, true)

-- name: next_run_at_computed
-- Before sync writes the default schedules' cron with the next_run_at it computed for them:
-- the trigger of 0007 keeps that next_run_at. Transaction-local (sync's own transaction).
SELECT set_config('pgsched.next_run_at_computed', %(on)s, true)

-- name: default_schedules
-- The code/profile schedules as their rows say (sync compares them with the definitions).
SELECT job_name, cron, source, timezone, next_run_at, error
FROM {schema}.schedules WHERE key = 'default'

-- name: sync_default_schedules
-- The code/profile schedule of each job whose definition or row differs is its row key =
-- 'default' (sql/0007_schedules.sql); `runtime` rows are never written here, except that
-- their next tick is computed again (next_run_at NULL: a runner validates them) when their
-- job's zone changed under them (`rezoned`, rows without a zone of their own) or the job
-- was enabled again (`reenabled`). `next_run_at` is sent where the sync computed a new first
-- tick; otherwise the row keeps its own while its expression is unchanged, and is computed
-- again by a runner when a stray edit of the row is put right.
WITH d AS (
    SELECT * FROM json_to_recordset(%(schedules)s::json)
        AS d(name text, cron text, source text, next_run_at timestamptz, rezoned boolean,
             reenabled boolean)
), upserted AS (
    INSERT INTO {schema}.schedules AS s (job_name, key, cron, source, next_run_at)
    SELECT d.name, 'default', d.cron, d.source, d.next_run_at FROM d WHERE d.cron IS NOT NULL
    ON CONFLICT (job_name, key) DO UPDATE SET
        cron = EXCLUDED.cron, source = EXCLUDED.source, timezone = NULL,
        next_run_at = CASE WHEN EXCLUDED.next_run_at IS NOT NULL THEN EXCLUDED.next_run_at
                           WHEN s.cron = EXCLUDED.cron AND s.timezone IS NULL
                           THEN s.next_run_at END,
        error = CASE WHEN EXCLUDED.next_run_at IS NOT NULL THEN NULL ELSE s.error END
), removed AS (
    DELETE FROM {schema}.schedules s USING d
    WHERE s.job_name = d.name AND s.key = 'default' AND d.cron IS NULL
)
UPDATE {schema}.schedules s SET next_run_at = NULL
FROM d
WHERE s.job_name = d.name AND s.key <> 'default' AND s.error IS NULL
  AND ((d.rezoned AND s.timezone IS NULL) OR d.reenabled)

-- name: unresolved_schedules
-- Rows written by plain SQL (or edited) that no runner has validated yet, a batch at a time,
-- skipping those another runner is validating.
SELECT s.id, s.job_name, s.key, s.cron, coalesce(s.timezone, j.timezone) AS zone,
       clock_timestamp() AS db_now
FROM {schema}.schedules s
JOIN {schema}.jobs j ON j.name = s.job_name
WHERE s.next_run_at IS NULL AND s.error IS NULL
ORDER BY s.id
LIMIT %(limit)s
FOR NO KEY UPDATE OF s SKIP LOCKED

-- name: resolve_schedules
-- What validation found, as JSON: the first tick, or why the row cannot fire. The default
-- row's tick is also its job's next_run_at. Runners are woken once for the batch.
-- Same transaction as unresolved_schedules, which locked these rows, so they are still
-- unresolved: the join is on the primary key alone. With `next_run_at IS NULL AND error IS
-- NULL` here too, the planner matched the partial index and, under the statistics of a table
-- that was empty before a bulk INSERT, compared every row of the batch with every unresolved
-- row (12.5M comparisons, 1 s per batch of 5,000 at 1M rows).
WITH found AS (
    SELECT * FROM json_to_recordset(%(rows)s::json)
        AS f(id bigint, next_run_at timestamptz, error text)
), done AS (
    UPDATE {schema}.schedules s SET next_run_at = f.next_run_at, error = f.error
    FROM found f
    WHERE s.id = f.id
    RETURNING s.job_name, s.key, s.next_run_at
), mirrored AS (
    UPDATE {schema}.jobs j SET next_run_at = d.next_run_at
    FROM done d
    WHERE j.name = d.job_name AND d.key = 'default'
      AND j.name IN (SELECT x.name FROM {schema}.jobs x  -- never wait: see record_ticks
                     WHERE x.name IN (SELECT job_name FROM done WHERE key = 'default')
                     FOR NO KEY UPDATE SKIP LOCKED)
)
SELECT CASE WHEN count(*) FILTER (WHERE next_run_at IS NOT NULL) > 0
            THEN pg_notify({channel}, 'jobs') END AS woken
FROM done

-- name: schedule_job
-- Before pgsched.add_schedule writes: the job's zone (a schedule without one uses it) and
-- the database clock its first tick is computed from.
SELECT timezone AS zone, clock_timestamp() AS db_now FROM {schema}.jobs WHERE name = %(name)s

-- name: insert_schedule
-- pgsched.add_schedule(..., if_exists="error"): a second row of one key is refused.
INSERT INTO {schema}.schedules (job_name, key, cron, timezone, params, next_run_at)
VALUES (%(job)s, %(key)s, %(cron)s, %(timezone)s, %(params)s, %(next_run_at)s)
RETURNING id, job_name, key, cron, timezone, params, enabled, paused, source, next_run_at,
          error, created_at, updated_at, %(zone)s::text AS zone

-- name: replace_schedule
-- if_exists="replace": the row of that key takes the new expression, zone and params at
-- once (a runtime row only: the default row is the code's). `computed` tells the trigger of
-- 0007 that next_run_at was computed for the new expression (once: the trigger consumes it).
WITH computed AS MATERIALIZED (
    SELECT set_config('pgsched.next_run_at_computed', 'once', true) AS flag
)
INSERT INTO {schema}.schedules AS s (job_name, key, cron, timezone, params, next_run_at)
SELECT %(job)s, %(key)s, %(cron)s, %(timezone)s, %(params)s, %(next_run_at)s FROM computed
ON CONFLICT (job_name, key) DO UPDATE SET
    cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, params = EXCLUDED.params,
    next_run_at = CASE WHEN (s.cron, s.timezone) IS NOT DISTINCT FROM
                            (EXCLUDED.cron, EXCLUDED.timezone) AND s.next_run_at IS NOT NULL
                       THEN s.next_run_at ELSE EXCLUDED.next_run_at END,
    error = NULL
WHERE s.source = 'runtime'
RETURNING id, job_name, key, cron, timezone, params, enabled, paused, source, next_run_at,
          error, created_at, updated_at, %(zone)s::text AS zone,
          set_config('pgsched.next_run_at_computed', '', true) AS computed_done

-- name: keep_schedule
-- if_exists="keep": an existing row of that key stays as it is (get_schedule reads it).
INSERT INTO {schema}.schedules (job_name, key, cron, timezone, params, next_run_at)
VALUES (%(job)s, %(key)s, %(cron)s, %(timezone)s, %(params)s, %(next_run_at)s)
ON CONFLICT (job_name, key) DO NOTHING
RETURNING id, job_name, key, cron, timezone, params, enabled, paused, source, next_run_at,
          error, created_at, updated_at, %(zone)s::text AS zone

-- name: get_schedule
SELECT s.id, s.job_name, s.key, s.cron, s.timezone, s.params, s.enabled, s.paused, s.source,
       s.next_run_at, s.error, s.created_at, s.updated_at,
       coalesce(s.timezone, j.timezone) AS zone
FROM {schema}.schedules s JOIN {schema}.jobs j ON j.name = s.job_name
WHERE s.job_name = %(job)s AND s.key = %(key)s

-- name: remove_schedule
-- A runtime schedule stops; its history stays (its waiting ticks are cancelled by the
-- trigger of sql/0007_schedules.sql).
DELETE FROM {schema}.schedules WHERE job_name = %(job)s AND key = %(key)s AND source = 'runtime'
RETURNING id

-- name: list_schedules
-- Every schedule (of one job, or of all), by job and key.
SELECT s.id, s.job_name, s.key, s.cron, s.timezone, s.params, s.enabled, s.paused, s.source,
       s.next_run_at, s.error, s.created_at, s.updated_at,
       coalesce(s.timezone, j.timezone) AS zone
FROM {schema}.schedules s JOIN {schema}.jobs j ON j.name = s.job_name
WHERE %(job)s::text IS NULL OR s.job_name = %(job)s
ORDER BY s.job_name, s.key = 'default' DESC, s.key
LIMIT %(limit)s

-- name: session_timeouts
-- The timeouts this role's sessions start with (server, database and role defaults), in
-- milliseconds, for the runner's start-up check of settings that conflict with pgsched.
SELECT current_user AS role, current_database() AS database,
       current_setting('statement_timeout') AS statement_timeout_text,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout')
           AS statement_timeout_ms
