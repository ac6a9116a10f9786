-- The events that move cash besides fills, in log order (for the audit).
SELECT payload FROM events WHERE kind IN ('AccountOpened', 'CashCredited', 'AccountReset') ORDER BY seq
