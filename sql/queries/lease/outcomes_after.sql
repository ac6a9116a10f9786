-- Outcomes of stream commands of messages after the cursor $1.
SELECT outcomes FROM command_outcomes WHERE last_message > $1 ORDER BY id
