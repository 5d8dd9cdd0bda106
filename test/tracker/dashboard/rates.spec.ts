import { NodeRates } from '../../../src/tracker/dashboard/rates'

const N = 'a'.repeat(32)
const at = (lastSeen: number, uploaded: number, downloaded: number): { nodeId: string, lastSeen: number, uploaded: number, downloaded: number }[] => [{ nodeId: N, lastSeen, uploaded, downloaded }]

describe('NodeRates', () => {
  it('is the counter delta over the time between two heartbeats; unknown (null) before the second', () => {
    const r = new NodeRates(3000)
    expect(r.observe(at(1000, 0, 0), 1000).get(N)).toBeNull()
    expect(r.observe(at(4000, 6_000_000, 3_000_000), 4000).get(N)).toEqual({ up: 2_000_000, down: 1_000_000 })
    // asked again before the next heartbeat: the same rate
    expect(r.observe(at(4000, 6_000_000, 3_000_000), 5000).get(N)).toEqual({ up: 2_000_000, down: 1_000_000 })
  })

  it('a publish a few ms after the heartbeat (same counters) keeps the rate; a heartbeat with nothing moved makes it zero', () => {
    const r = new NodeRates(3000)
    r.observe(at(0, 0, 0), 0)
    r.observe(at(3000, 0, 3000), 3000)
    expect(r.observe(at(3005, 0, 3000), 3005).get(N)).toEqual({ up: 0, down: 1000 })
    expect(r.observe(at(6000, 0, 3000), 6000).get(N)).toEqual({ up: 0, down: 0 })
  })

  it('a node silent for two heartbeats (its process ended) shows no rate', () => {
    const r = new NodeRates(3000)
    r.observe(at(0, 0, 0), 0)
    expect(r.observe(at(3000, 0, 3000), 6000).get(N)).toEqual({ up: 0, down: 1000 })
    expect(r.observe(at(3000, 0, 3000), 9001).get(N)).toEqual({ up: 0, down: 0 })
  })

  it('counters that went down (a restarted node) give no negative rate, and nodes no longer passed are forgotten', () => {
    const r = new NodeRates(3000)
    r.observe(at(0, 5000, 5000), 0)
    expect(r.observe(at(3000, 10, 3010), 3000).get(N)).toEqual({ up: 0, down: 0 })
    r.observe([], 3000)
    // forgotten: the next sample starts over
    expect(r.observe(at(9000, 1e9, 0), 9000).get(N)).toBeNull()
  })
})
