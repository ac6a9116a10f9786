-- Ends every session of a superseded engine (its application_name) on this
-- database, so a paused engine holding row locks mid-transaction cannot
-- block the takeover. Other databases on the server (another deployment
-- whose engines have the same names) are not touched.
SELECT count(pg_terminate_backend(pid))::BIGINT
  FROM pg_stat_activity
 WHERE application_name = $1 AND datname = current_database() AND pid <> pg_backend_pid()
