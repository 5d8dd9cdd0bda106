import { HEARTBEAT_MS } from '../../limits'

/** A node's counters as the tracker last saw them. */
export interface CounterSample { nodeId: string, lastSeen: number, uploaded: number, downloaded: number }
export interface NodeRate { up: number, down: number }

/** No heartbeat for this many periods: the node is (nearly) gone and moves nothing. */
const SILENT_PERIODS = 2

/**
 * Live rates (bytes/s) from the counters nodes send with their heartbeats: the delta between two
 * reports over the time between them. Pure: times are the registry's `lastSeen`. A publish also
 * refreshes `lastSeen` (leechers re-publish right after each heartbeat), so a sample with the same
 * counters only counts as "nothing moved" once half a heartbeat has passed; otherwise a publish
 * a few ms after an announce would read as a rate of zero.
 */
export class NodeRates {
  private readonly last = new Map<string, { at: number, uploaded: number, downloaded: number, rate: NodeRate | null }>()

  constructor (private readonly heartbeatMs = HEARTBEAT_MS) {}

  /**
   * Take the nodes' latest counters; returns each one's rate, null until a second report came.
   * Nodes not passed are forgotten (memory stays bounded by what is shown).
   */
  observe (nodes: CounterSample[], now: number): Map<string, NodeRate | null> {
    const out = new Map<string, NodeRate | null>()
    const seen = new Set<string>()
    for (const n of nodes) {
      seen.add(n.nodeId)
      const prev = this.last.get(n.nodeId)
      if (prev === undefined) {
        this.last.set(n.nodeId, { at: n.lastSeen, uploaded: n.uploaded, downloaded: n.downloaded, rate: null })
        out.set(n.nodeId, null)
        continue
      }
      const dt = n.lastSeen - prev.at
      const moved = n.uploaded !== prev.uploaded || n.downloaded !== prev.downloaded
      if (dt > 0 && (moved || dt >= this.heartbeatMs / 2)) {
        // a node that restarted reports smaller counters: that is no negative rate
        prev.rate = { up: Math.max(0, n.uploaded - prev.uploaded) * 1000 / dt, down: Math.max(0, n.downloaded - prev.downloaded) * 1000 / dt }
        prev.at = n.lastSeen; prev.uploaded = n.uploaded; prev.downloaded = n.downloaded
      }
      // a node gone silent (its process ended) keeps no rate until it expires
      out.set(n.nodeId, now - prev.at > SILENT_PERIODS * this.heartbeatMs ? { up: 0, down: 0 } : prev.rate)
    }
    for (const id of this.last.keys()) if (!seen.has(id)) this.last.delete(id)
    return out
  }
}
