-- 0050: the second level of verified objects (issue 12), behind each gate's
-- Badger. An object is one row of modgate_objects and its bytes are rows of
-- modgate_object_chunks, written in one transaction: a reader sees all of
-- an object or none of it. id changes when an object is stored again, so a
-- reader that opened one version never reads another's chunks. The
-- gate checks what it reads against sha256 before it stores or serves it.
CREATE TABLE modgate_objects (
	key        text PRIMARY KEY,             -- the gate's cache key, such as zip/<module>/@v/<version>
	id         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
	size       bigint NOT NULL CHECK (size >= 0),
	sha256     bytea NOT NULL CHECK (length(sha256) = 32),  -- of the whole object, recorded when it was verified
	mark       smallint NOT NULL CHECK (mark BETWEEN 0 AND 255), -- how it was trusted (the gate's trust mark)
	chunk_size integer NOT NULL CHECK (chunk_size > 0),
	chunks     integer NOT NULL CHECK (chunks >= 0),
	stored_at  timestamptz NOT NULL DEFAULT now(),
	stored_by  text NOT NULL                 -- the gate that stored it, for operators
);

CREATE TABLE modgate_object_chunks (
	object_id bigint NOT NULL REFERENCES modgate_objects (id) ON DELETE CASCADE,
	idx       integer NOT NULL CHECK (idx >= 0),
	data      bytea NOT NULL,
	PRIMARY KEY (object_id, idx)
);

-- Module zips do not compress: store chunks out of line without trying.
ALTER TABLE modgate_object_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
