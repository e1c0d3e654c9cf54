-- Removes everything pgsched created in its schema (history included). Used by downgrade only.
DROP TABLE IF EXISTS {schema}.runs, {schema}.runners, {schema}.jobs CASCADE;
DROP FUNCTION IF EXISTS {schema}.notify_new_requests(), {schema}.notify_schedule_change(),
    {schema}.retry_failed_run();
