-- 0051: one upstream fetch per object across the cluster (issue 12). A gate
-- that fetches an object holds its row here until it has stored it; the
-- others wait. The holder renews expires_at while it fetches, so a gate
-- that dies blocks the others no longer than one lease period. Times are
-- the database's clock, never a gate's.
CREATE TABLE modgate_fetch_leases (
	key        text PRIMARY KEY,
	token      text NOT NULL,        -- this taking of the lease: only its holder renews or releases it
	holder     text NOT NULL,        -- the gate, for logs
	expires_at timestamptz NOT NULL
);
