// Sends touchpoints with Segment's official Node SDK (@segment/analytics-node) to the
// Segment-compatible intake: `node segment_node.mjs BASE_URL WRITE_KEY`. Prints the
// SDK's own errors and exits 1 on any, so the Python test sees what went wrong.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, maxEventsInBatch: 10, flushInterval: 100, maxRetries: 1 })
const failures = []
analytics.on('error', (error) => failures.push(String(error && (error.reason || error.message || error))))

const t0 = Date.parse('2026-03-02T09:00:00Z')
const day = 24 * 3600 * 1000
analytics.page({ anonymousId: 'node-visitor', name: 'Pricing', timestamp: new Date(t0), messageId: 'n1' })
analytics.identify({ anonymousId: 'node-visitor', userId: 'node-buyer@example.com', traits: { plan: 'pro' }, messageId: 'n2' })
analytics.track({
  userId: 'node-buyer@example.com', event: 'Demo Completed', properties: { deal_id: 'D-N1' },
  context: { campaign: { name: 'node-launch', medium: 'cpc' } }, timestamp: new Date(t0 + day), messageId: 'n3',
})
analytics.track({ userId: 'node-buyer@example.com', event: 'Trial Started', timestamp: new Date(t0 + 2 * day), messageId: 'n4' })
await analytics.closeAndFlush({ timeout: 20000 })
if (failures.length) {
  console.error(failures.join('\n'))
  process.exit(1)
}
console.log('sent')
