-- 0052: each chunk of an object carries the SHA-256 of its own bytes, so a
-- gate reading an object checks every chunk before it serves it and can
-- stream a large object as it reads it (issue 12), holding back only the
-- tail until the whole object matches its recorded sha256. Chunks stored
-- before this migration have none: a gate then checks the whole object
-- before it serves any of it, as before.
ALTER TABLE modgate_object_chunks
	ADD COLUMN sha256 bytea CHECK (sha256 IS NULL OR length(sha256) = 32);
