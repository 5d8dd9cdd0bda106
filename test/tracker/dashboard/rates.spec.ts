import { NodeRates } from '../../../src/tracker/dashboard/rates'

const N = 'a'.repeat(32)

describe('NodeRates', () => {
  it('is the counter delta over the time between two heartbeats', () => {
    const r = new NodeRates(3000)
    expect(r.observe([{ nodeId: N, lastSeen: 1000, uploaded: 0, downloaded: 0 }]).get(N)).toEqual({ up: 0, down: 0 })
    expect(r.observe([{ nodeId: N, lastSeen: 4000, uploaded: 6_000_000, downloaded: 3_000_000 }]).get(N)).toEqual({ up: 2_000_000, down: 1_000_000 })
    // asked again before the next heartbeat: the same rate
    expect(r.observe([{ nodeId: N, lastSeen: 4000, uploaded: 6_000_000, downloaded: 3_000_000 }]).get(N)).toEqual({ up: 2_000_000, down: 1_000_000 })
  })

  it('a publish a few ms after the heartbeat (same counters) keeps the rate; a heartbeat with nothing moved makes it zero', () => {
    const r = new NodeRates(3000)
    r.observe([{ nodeId: N, lastSeen: 0, uploaded: 0, downloaded: 0 }])
    r.observe([{ nodeId: N, lastSeen: 3000, uploaded: 0, downloaded: 3000 }])
    expect(r.observe([{ nodeId: N, lastSeen: 3005, uploaded: 0, downloaded: 3000 }]).get(N)).toEqual({ up: 0, down: 1000 })
    expect(r.observe([{ nodeId: N, lastSeen: 6000, uploaded: 0, downloaded: 3000 }]).get(N)).toEqual({ up: 0, down: 0 })
  })

  it('counters that went down (a restarted node) give no negative rate, and nodes no longer passed are forgotten', () => {
    const r = new NodeRates(3000)
    r.observe([{ nodeId: N, lastSeen: 0, uploaded: 5000, downloaded: 5000 }])
    expect(r.observe([{ nodeId: N, lastSeen: 3000, uploaded: 10, downloaded: 3010 }]).get(N)).toEqual({ up: 0, down: 0 })
    r.observe([])
    // forgotten: the next sample starts over
    expect(r.observe([{ nodeId: N, lastSeen: 9000, uploaded: 1e9, downloaded: 0 }]).get(N)).toEqual({ up: 0, down: 0 })
  })
})
