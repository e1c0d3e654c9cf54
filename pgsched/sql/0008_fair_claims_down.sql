-- Undoes 0008_fair_claims.sql.
DROP INDEX {schema}.runs_pending_job_due_idx;
