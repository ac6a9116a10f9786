SELECT payload FROM events WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq
