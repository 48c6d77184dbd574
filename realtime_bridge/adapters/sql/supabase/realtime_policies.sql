-- realtime_bridge: Row Level Security on realtime.messages for private channels.
--
-- Supabase Realtime decides whether a browser may use a private channel by
-- checking policies on realtime.messages as the browser's JWT: SELECT lets it
-- receive (broadcast, and the presence list), INSERT lets it track presence or
-- send a broadcast. realtime.topic() is the channel being checked, and
-- realtime.messages.extension says which of the two ('broadcast', 'presence').
--
-- These policies let a signed-in browser use exactly the channels the backend
-- authorised: the JWT that SupabaseAdapter.authorize() mints lists them in its
-- "realtime_bridge" claim ({"realtime_bridge": {"topics": ["private-orders.42"]}}).
-- Tracking presence is allowed only on presence- channels, as on Pusher, so a
-- channel name means the same thing on every adapter. Browsers do not publish:
-- events go through the outbox (database first), so the policy that would let
-- them send broadcasts is left out unless policies_sql(client_broadcast=True).
--
-- The backend publishes and reads presence with the service_role key, which
-- bypasses RLS. Supabase enables RLS on realtime.messages itself.
-- Run this once per project (SQL editor, or a migration); running it again
-- replaces the policies.

drop policy if exists "realtime_bridge: receive on authorised channels" on realtime.messages;
create policy "realtime_bridge: receive on authorised channels"
  on realtime.messages
  for select
  to authenticated
  using (
    realtime.messages.extension in ('broadcast', 'presence')
    and coalesce((select auth.jwt()) -> 'realtime_bridge' -> 'topics', '[]'::jsonb)
        @> to_jsonb((select realtime.topic()))
  );

drop policy if exists "realtime_bridge: track presence on authorised channels" on realtime.messages;
create policy "realtime_bridge: track presence on authorised channels"
  on realtime.messages
  for insert
  to authenticated
  with check (
    realtime.messages.extension = 'presence'
    and (select realtime.topic()) like 'presence-%'
    and coalesce((select auth.jwt()) -> 'realtime_bridge' -> 'topics', '[]'::jsonb)
        @> to_jsonb((select realtime.topic()))
  );

-- Dropped either way, so running this again without client_broadcast takes it away.
drop policy if exists "realtime_bridge: send on authorised channels" on realtime.messages;
-- >>> client_broadcast
create policy "realtime_bridge: send on authorised channels"
  on realtime.messages
  for insert
  to authenticated
  with check (
    realtime.messages.extension = 'broadcast'
    and coalesce((select auth.jwt()) -> 'realtime_bridge' -> 'topics', '[]'::jsonb)
        @> to_jsonb((select realtime.topic()))
  );
-- <<< client_broadcast
