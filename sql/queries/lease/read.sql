-- The lease as a standby sees it: whether it expired (by the database's
-- clock) and whether its holder's lease session is still connected.
SELECT epoch,
       holder,
       (expires_at < now()) AS expired,
       EXISTS (SELECT 1 FROM pg_stat_activity a
                WHERE a.pid = l.holder_pid AND a.backend_start <= l.acquired_at) AS holder_connected,
       CASE WHEN expires_at > now() THEN (EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::BIGINT ELSE 0 END
           AS remaining_ms,
       command_cursor,
       command_stream
  FROM engine_lease l
