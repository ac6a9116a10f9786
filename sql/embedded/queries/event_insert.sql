INSERT INTO events (seq, at_ms, kind, player, payload) VALUES (?1, ?2, ?3, ?4, ?5)
