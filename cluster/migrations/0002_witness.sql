-- 0002: the witness's Store (issue 12), one row per key: the witnessed tree
-- head (moved only by compare-and-swap), the newest co-signed head, fork
-- evidence and its clearing, the history of tree heads, and the verified
-- records and tiles. Keys compare bytewise (COLLATE "C"), so a Scan in key
-- order is an index range scan.
CREATE TABLE modgate_witness (
	key        text COLLATE "C" PRIMARY KEY,
	value      bytea NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every change to the witness's own state (keys under witness/, not the
-- records and tiles under sumdb/) is announced on the channel
-- modgate_witness, in the transaction that makes it, so every gate reloads
-- it: a fork seen by one gate closes all, a clear-fork on one opens all.
CREATE FUNCTION modgate_witness_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	k text := CASE WHEN TG_OP = 'DELETE' THEN OLD.key ELSE NEW.key END;
BEGIN
	IF starts_with(k, 'witness/') THEN
		PERFORM pg_notify('modgate_witness', k);
	END IF;
	RETURN NULL;
END $$;

CREATE TRIGGER modgate_witness_notify
	AFTER INSERT OR UPDATE OR DELETE ON modgate_witness
	FOR EACH ROW EXECUTE FUNCTION modgate_witness_notify();
