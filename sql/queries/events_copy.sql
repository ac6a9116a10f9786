COPY events (seq, at_ms, kind, player, payload) FROM STDIN (FORMAT binary)
