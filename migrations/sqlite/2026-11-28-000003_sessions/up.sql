-- Dashboard sessions: the cookie holds a random id, stored hashed; actions need the CSRF token.
CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
