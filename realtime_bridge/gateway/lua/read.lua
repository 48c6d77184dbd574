-- Read a channel's stream after a cursor, or say that the cursor is older than
-- what is kept (a gap the client must fill by re-fetching).
--
-- KEYS[1] the channel's stream. ARGV[1] 'after' or 'latest'; ARGV[2] the cursor
-- (a stream entry id, or '' for none); ARGV[3] how many entries at most;
-- ARGV[4] the stream's idle expiry (history_ttl) in milliseconds.
--
-- Returns {status, position, entries}:
--   'ok', the cursor (or, with none, the newest entry id now), entries after it
--   (oldest first; for 'latest', the newest entries, newest first);
--   'gap', the newest entry id now, {}.
--
-- With no entries, "the newest entry id now" is a position just before the
-- Redis server's current millisecond: every entry added later sorts after it.
--
-- A cursor is good when no entry after it can have been removed:
--   * its own entry is still in the stream: trimming removes the oldest first;
--   * or it sorts after the stream's first entry (nothing after it was trimmed);
--   * or the stream never lost an entry (entries-added = length) and the cursor
--     is younger than history_ttl: an older incarnation of the stream, expired
--     while the client was away, would have needed history_ttl of silence.
-- A cursor from the future (by the Redis server's clock) is never good.
-- Nothing here ever XDELs, so these are the only ways an entry leaves.
local stream, mode, cursor = KEYS[1], ARGV[1], ARGV[2]
local count, ttl_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function newest()
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #last > 0 then
    return last[1][1]
  end
  return (now_ms - 1) .. '-0'
end

-- Compare two entry ids of decimal digits: -1, 0 or 1 (no float rounding).
local function compare(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  local function digits(x, y)
    if #x ~= #y then
      return #x < #y and -1 or 1
    end
    if x == y then
      return 0
    end
    return x < y and -1 or 1
  end
  local by_ms = digits(a_ms, b_ms)
  if by_ms ~= 0 then
    return by_ms
  end
  return digits(a_seq, b_seq)
end

local function info_field(info, name)
  for i = 1, #info, 2 do
    if info[i] == name then
      return info[i + 1]
    end
  end
  return nil
end

local function cursor_is_good()
  if #redis.call('XRANGE', stream, cursor, cursor) > 0 then
    return true
  end
  local cursor_ms = tonumber(string.match(cursor, '^(%d+)-'))
  if cursor_ms > now_ms then
    return false -- from the future (another server's clock): never trusted
  end
  local young = now_ms - cursor_ms < ttl_ms
  if redis.call('EXISTS', stream) == 0 then
    return young
  end
  local info = redis.call('XINFO', 'STREAM', stream)
  local first = info_field(info, 'first-entry')
  if first and compare(cursor, first[1]) > 0 then
    return true
  end
  local added = info_field(info, 'entries-added')
  return young and added ~= nil and added == info_field(info, 'length')
end

if mode == 'latest' then
  return {'ok', newest(), redis.call('XREVRANGE', stream, '+', '-', 'COUNT', count)}
end
if cursor == '' then
  return {'ok', newest(), {}}
end
if not cursor_is_good() then
  return {'gap', newest(), {}}
end
return {'ok', cursor, redis.call('XRANGE', stream, '(' .. cursor, '+', 'COUNT', count)}
