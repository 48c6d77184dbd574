-- realtime_bridge outbox, PostgreSQL: the whole current schema.
-- Applied to an empty database by Outbox.migrate(); an existing one is brought
-- up to date by the files in migrations/, in order. A test checks that both
-- paths give the same database.

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

-- The last seq recorded per channel: written only by the relay that owns the
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

-- Claim the next batch of a relay's partitions, in commit order per channel. A row
-- waiting for a retry holds back the later rows of its channel, and only of its
-- channel. Nothing is written here: a row claimed for the first time is given its
-- channel's next seq (after the last one recorded, and after p_floor_seqs, the
-- highest seq of that channel this relay has in flight), and the relay records it
-- with the row's outcome (realtime_outbox_channels.last_seq moves then). A relay
-- killed before that leaves nothing recorded, so the next claim gives the rows the
-- same seqs again; a row that was retried keeps its seq.
-- p_exclude: rows this relay holds already (the batch in flight while it claims the next).
CREATE OR REPLACE FUNCTION realtime_outbox_claim_v2(p_partitions smallint[], p_limit integer,
                                                    p_exclude bigint[], p_floor_channels text[],
                                                    p_floor_seqs bigint[])
RETURNS TABLE (pk bigint, event_id text, channel text, type text, v smallint, data json,
               created_at timestamptz, seq bigint, attempts integer)
LANGUAGE sql STABLE AS $$
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
    ), floors AS (
        SELECT f.channel, max(f.seq) AS seq
        FROM unnest(p_floor_channels, p_floor_seqs) AS f (channel, seq)
        GROUP BY f.channel
    )
    SELECT b.pk, b.event_id, b.channel, b.type, b.v, b.data, b.created_at,
           coalesce(b.seq,
                    greatest(coalesce(ch.last_seq, 0), coalesce(floors.seq, 0))
                    + row_number() OVER (PARTITION BY b.channel, b.seq IS NULL ORDER BY b.pk)),
           b.attempts
    FROM batch b
    LEFT JOIN realtime_outbox_channels ch ON ch.channel = b.channel
    LEFT JOIN floors ON floors.channel = b.channel
    ORDER BY b.pk;
$$;
