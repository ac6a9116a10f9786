-- In an engine's write transaction that does not renew (checkpoints,
-- snapshots): the lease is still held at epoch $1. The share lock lasts to
-- the commit, so a takeover cannot slip in between.
SELECT epoch FROM engine_lease WHERE epoch = $1 FOR SHARE
