-- The bookkeeping of migrations itself lives in modgate_schema, which
-- cluster.Open creates before it applies the files in this directory.
-- 0001 holds the cluster's identity: the keys of its first gate
-- (issue 12: one cluster never speaks with two keys).
CREATE TABLE modgate_identity (
	singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	verifier   text NOT NULL,       -- the enterprise note verifier key
	ca_cert    bytea NOT NULL,      -- the CA certificate, DER
	created_at timestamptz NOT NULL DEFAULT now()
);
