-- 0001: the first outbox schema.

CREATE TABLE IF NOT EXISTS realtime_outbox (
    pk              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL UNIQUE,
    channel         TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    v               INTEGER NOT NULL DEFAULT 1,
    data            TEXT    NOT NULL,
    -- Times are Unix seconds (REAL), from the database's clock.
    created_at      REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    state           TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'sent', 'dead')),
    seq             INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    last_error      TEXT,
    sent_at         REAL
);

CREATE INDEX IF NOT EXISTS realtime_outbox_pending
    ON realtime_outbox (pk) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS realtime_outbox_waiting
    ON realtime_outbox (channel, next_attempt_at) WHERE state = 'pending' AND attempts > 0;
CREATE INDEX IF NOT EXISTS realtime_outbox_history
    ON realtime_outbox (channel, seq) WHERE state = 'sent';
CREATE INDEX IF NOT EXISTS realtime_outbox_sent_at
    ON realtime_outbox (sent_at) WHERE state = 'sent';
CREATE INDEX IF NOT EXISTS realtime_outbox_dead
    ON realtime_outbox (pk) WHERE state = 'dead';

CREATE TABLE IF NOT EXISTS realtime_outbox_channels (
    channel  TEXT    PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
