-- 0004: the audit log of every gate (issue 12), queryable with SQL by
-- security teams. One row per entry: its key (which sorts by time, as in
-- a single gate's store), the fields people filter on as columns, and the
-- whole entry as JSON (before/after policies, would_deny counts). The
-- gates enforce the single-gate retention rules (--audit-max-age,
-- --audit-max-size) on this table.
--   SELECT time, who, action, subject, reason FROM modgate_audit
--   WHERE action LIKE 'policy.%' ORDER BY key DESC LIMIT 20;
CREATE TABLE modgate_audit (
	key     text COLLATE "C" PRIMARY KEY,
	time    timestamptz NOT NULL,
	who     text NOT NULL DEFAULT '',
	action  text NOT NULL DEFAULT '',
	subject text NOT NULL DEFAULT '',
	rule    text NOT NULL DEFAULT '',
	reason  text NOT NULL DEFAULT '',
	entry   json NOT NULL
);
CREATE INDEX modgate_audit_time ON modgate_audit (time);
CREATE INDEX modgate_audit_action ON modgate_audit (action, time);
