-- 0001: the first outbox schema.

CREATE TABLE IF NOT EXISTS realtime_outbox (
    pk              bigserial   PRIMARY KEY,
    event_id        text        NOT NULL UNIQUE,
    channel         text        NOT NULL,
    type            text        NOT NULL,
    v               smallint    NOT NULL DEFAULT 1,
    data            json        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Channels are spread over 64 partitions; a relay owns whole partitions,
    -- so each channel has one publisher at a time and keeps its order.
    partition       smallint    NOT NULL GENERATED ALWAYS AS (hashtext(channel) & 63) STORED,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'sent', 'dead')),
    seq             bigint,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz
);

-- What a relay claims: pending rows, oldest first (their partitions are checked on
-- the row). Ordered by pk alone so a claim reads pending rows only: an index led by
-- partition cannot give pk order over several partitions, and the primary key makes
-- every claim step over all the sent rows kept for history.
CREATE INDEX IF NOT EXISTS realtime_outbox_pending
    ON realtime_outbox (pk) WHERE state = 'pending';
-- Rows waiting for a retry hold back the later rows of their channel.
CREATE INDEX IF NOT EXISTS realtime_outbox_waiting
    ON realtime_outbox (channel, next_attempt_at) WHERE state = 'pending' AND attempts > 0;
-- History answered from the source of truth, and its retention.
CREATE INDEX IF NOT EXISTS realtime_outbox_history
    ON realtime_outbox (channel, seq) WHERE state = 'sent';
CREATE INDEX IF NOT EXISTS realtime_outbox_sent_at
    ON realtime_outbox (sent_at) WHERE state = 'sent';
CREATE INDEX IF NOT EXISTS realtime_outbox_dead
    ON realtime_outbox (pk) WHERE state = 'dead';

-- The last seq given out per channel: written only by the relay that owns the
-- channel's partition, so application transactions never wait on it.
CREATE TABLE IF NOT EXISTS realtime_outbox_channels (
    channel  text   PRIMARY KEY,
    last_seq bigint NOT NULL
);

-- Wake relays when rows are committed. NOTIFY is a hint: relays poll too.
CREATE OR REPLACE FUNCTION realtime_outbox_notify_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('realtime_outbox', '');
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS realtime_outbox_notify ON realtime_outbox;
CREATE TRIGGER realtime_outbox_notify
    AFTER INSERT ON realtime_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION realtime_outbox_notify_v1();

-- Claim the next batch of a relay's partitions, in commit order per channel,
-- giving each row its channel's next seq the first time it is claimed (a
-- retried row keeps its seq). A row waiting for a retry holds back the later
-- rows of its channel, and only of its channel.
-- p_exclude: rows this relay holds already (the batch in flight while it claims the next).
CREATE OR REPLACE FUNCTION realtime_outbox_claim_v1(p_partitions smallint[], p_limit integer,
                                                    p_exclude bigint[])
RETURNS TABLE (pk bigint, event_id text, channel text, type text, v smallint, data json,
               created_at timestamptz, seq bigint, attempts integer)
LANGUAGE sql AS $$
    WITH batch AS (
        SELECT o.pk, o.event_id, o.channel, o.type, o.v, o.data, o.created_at, o.seq,
               o.attempts
        FROM realtime_outbox o
        WHERE o.state = 'pending'
          AND o.partition = ANY (p_partitions)
          AND o.next_attempt_at <= now()
          AND o.pk <> ALL (p_exclude)
          AND NOT EXISTS (
              SELECT 1 FROM realtime_outbox w
              WHERE w.channel = o.channel AND w.state = 'pending' AND w.attempts > 0
                AND w.next_attempt_at > now() AND w.pk < o.pk)
        ORDER BY o.pk
        LIMIT p_limit
    ), fresh AS (
        SELECT b.pk, b.channel, row_number() OVER (PARTITION BY b.channel ORDER BY b.pk) AS n
        FROM batch b WHERE b.seq IS NULL
    ), counts AS (
        SELECT f.channel, count(*) AS c FROM fresh f GROUP BY f.channel
    ), bumped AS (
        INSERT INTO realtime_outbox_channels AS ch (channel, last_seq)
        SELECT counts.channel, counts.c FROM counts
        ON CONFLICT ON CONSTRAINT realtime_outbox_channels_pkey
        DO UPDATE SET last_seq = ch.last_seq + EXCLUDED.last_seq
        RETURNING ch.channel, ch.last_seq
    ), numbered AS (
        UPDATE realtime_outbox o
        SET seq = bumped.last_seq - counts.c + fresh.n
        FROM fresh
        JOIN counts ON counts.channel = fresh.channel
        JOIN bumped ON bumped.channel = fresh.channel
        WHERE o.pk = fresh.pk
        RETURNING o.pk, o.seq
    )
    -- The batch carries every column: joining the table again lets the planner, which
    -- cannot see p_limit, merge-join along the whole primary key.
    SELECT batch.pk, batch.event_id, batch.channel, batch.type, batch.v, batch.data,
           batch.created_at, coalesce(numbered.seq, batch.seq), batch.attempts
    FROM batch
    LEFT JOIN numbered ON numbered.pk = batch.pk
    ORDER BY batch.pk;
$$;
