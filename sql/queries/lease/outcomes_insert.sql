INSERT INTO command_outcomes (first_message, last_message, outcomes) VALUES ($1, $2, $3)
