-- Ends every session of a superseded engine (its application_name), so a
-- paused engine holding row locks mid-transaction cannot block the takeover.
SELECT count(pg_terminate_backend(pid))::BIGINT
  FROM pg_stat_activity
 WHERE application_name = $1 AND pid <> pg_backend_pid()
