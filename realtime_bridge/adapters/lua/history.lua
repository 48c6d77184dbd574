-- Read a page of a channel's stream around an event-id cursor.
--
-- KEYS[1] the channel's stream, KEYS[2] the cursor event's dedupe key (which
-- holds its stream entry id); ARGV[1] 'latest', 'before' or 'after';
-- ARGV[2] how many entries to return.
--
-- Returns the entries (newest first for 'latest' and 'before', oldest first for
-- 'after'), or nil when the cursor is unknown. A cursor whose own entry has
-- been trimmed away is unknown too, as in the memory adapter: for 'after',
-- entries after it may have gone with it, and a client must re-fetch rather
-- than silently miss them.
local stream, mode, count = KEYS[1], ARGV[1], tonumber(ARGV[2])
if mode == 'latest' then
  return redis.call('XREVRANGE', stream, '+', '-', 'COUNT', count)
end
local entry = redis.call('GET', KEYS[2])
if not entry then
  return false
end
if #redis.call('XRANGE', stream, entry, entry) == 0 then
  return false
end
if mode == 'before' then
  return redis.call('XREVRANGE', stream, '(' .. entry, '-', 'COUNT', count)
end
return redis.call('XRANGE', stream, '(' .. entry, '+', 'COUNT', count)
