// A browser, as Supabase's JavaScript client (@supabase/realtime-js) sees the emulator.
//
//   node client.mjs BASE_URL KEY TOPIC PRESENCE_KEY NAME COUNT [TIMEOUT_MS]
//
// Joins TOPIC on BASE_URL/realtime/v1 with KEY as apikey, presence keyed PRESENCE_KEY; on
// SUBSCRIBED tracks {name: NAME}. Prints one JSON line per happening: {"status": ...},
// {"broadcast": payload} (the "payload" of each broadcast, any event),
// {"presence": presenceState()} on each sync, {"error": ...}. Exits 0 after COUNT
// broadcasts, 1 on a channel error or after TIMEOUT_MS (default 20000).
//
// The package comes from REALTIME_JS_MODULES (a node_modules directory; by default the
// repository's .cache/realtime-js/node_modules, where scripts/install-realtime-js puts it).
// Node 20 has no WebSocket of its own, so ws is the transport; the emulator speaks the
// Phoenix JSON serializer, vsn 1.0.0 (realtime-js defaults to 2.0.0).
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const modules =
  process.env.REALTIME_JS_MODULES ??
  path.join(here, '..', '..', '.cache', 'realtime-js', 'node_modules')
const require = createRequire(path.join(modules, 'index.js'))
const { RealtimeClient } = require('@supabase/realtime-js')
const WebSocket = require('ws')

const [base, key, topic, presenceKey, name, countArg, timeoutArg] = process.argv.slice(2)
const wanted = Number(countArg ?? '1')
const timeoutMs = Number(timeoutArg ?? '20000')

const say = (line) => process.stdout.write(JSON.stringify(line) + '\n')

const client = new RealtimeClient(`${base}/realtime/v1`, {
  params: { apikey: key },
  vsn: '1.0.0',
  transport: WebSocket,
})
const channel = client.channel(topic, {
  config: { broadcast: { self: false }, presence: { key: presenceKey } },
})

let received = 0
let finished = false
async function finish(code) {
  if (finished) return
  finished = true
  clearTimeout(timer)
  try {
    await client.removeAllChannels()
    client.disconnect()
  } catch (error) {
    say({ error: `on disconnect: ${error}` })
  }
  process.exit(code)
}
const timer = setTimeout(() => {
  say({ error: `timed out after ${timeoutMs} ms with ${received} of ${wanted} broadcasts` })
  finish(1)
}, timeoutMs)

channel
  .on('broadcast', { event: '*' }, (message) => {
    say({ broadcast: message.payload, event: message.event })
    received += 1
    if (received >= wanted) finish(0)
  })
  .on('presence', { event: 'sync' }, () => {
    say({ presence: channel.presenceState() })
  })
  .subscribe(async (status, error) => {
    if (status === 'SUBSCRIBED') {
      const result = await channel.track({ name })
      say({ status, track: result })
    } else {
      say({ status, error: error ? String(error) : null })
      if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') finish(1)
    }
  })
