-- 0003: the policy of every gate (issue 12): one document, the YAML of
-- policy.yaml, with a version that each change moves by one (a
-- compare-and-swap). A change is announced on the channel modgate_policy.
CREATE TABLE modgate_policy (
	singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	document   bytea NOT NULL,
	version    bigint NOT NULL CHECK (version > 0),
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION modgate_policy_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('modgate_policy', NEW.version::text);
	RETURN NULL;
END $$;

CREATE TRIGGER modgate_policy_notify
	AFTER INSERT OR UPDATE ON modgate_policy
	FOR EACH ROW EXECUTE FUNCTION modgate_policy_notify();
