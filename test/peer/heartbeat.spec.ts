import { defer, of, throwError } from 'rxjs'
import { heartbeats } from '../../src/peer/heartbeat'
import { HEARTBEAT_BACKOFF_MAX_MS } from '../../src/limits'
import { SimScheduler } from '../../src/sim/scheduler'

describe('heartbeats', () => {
  it('while the tracker does not answer, beats back off no further than HEARTBEAT_BACKOFF_MAX_MS: after a long outage the node is back within that (it took up to a minute)', () => {
    const s = new SimScheduler()
    const DOWN_UNTIL = 180_000
    const asked: number[] = []
    const regular: number[] = []
    const sub = heartbeats({
      periodMs: 3000,
      scheduler: s,
      random: () => 0, // (no jitter: the longest waits)
      announce: () => defer(() => { asked.push(s.now()); return s.now() < DOWN_UNTIL ? throwError(() => new Error('tracker unreachable')) : of({ resync: false }) }),
      republish: () => [],
      regular: () => { regular.push(s.now()); return [of(null)] },
    }).subscribe()
    s.run(200_000)
    sub.unsubscribe()
    const gaps = asked.slice(1).map((t, i) => t - asked[i])
    expect(Math.max(...gaps)).toBeLessThanOrEqual(HEARTBEAT_BACKOFF_MAX_MS + 3000)
    expect(gaps.slice(0, 2)).toEqual([6000, 6000 + 3000].map((g) => Math.min(g, HEARTBEAT_BACKOFF_MAX_MS + 3000)))
    // back within one capped wait of the tracker's return, beating every period again
    expect(regular[0]).toBeGreaterThanOrEqual(DOWN_UNTIL)
    expect(regular[0] - DOWN_UNTIL).toBeLessThanOrEqual(HEARTBEAT_BACKOFF_MAX_MS + 3000)
    expect(regular[1] - regular[0]).toBe(3000)
  })
})
