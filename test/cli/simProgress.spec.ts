import { progressLine } from '../../src/cli/simulate'
import { runScenario } from '../../src/sim/scenario'

describe('the progress line of a simulation on a terminal', () => {
  it('says virtual time against the bound, leechers done and wall time', () => {
    expect(progressLine({ virtualMs: 1200, done: 123, nodes: 10_000, boundMs: 3355.44 }, 312_400)).toBe('virtual 1.2 s (bound 3.36 s): 123 / 10000 leechers done; wall 5 min 12 s')
    expect(progressLine({ virtualMs: 0, done: 0, nodes: 4, boundMs: 800 }, 4_600)).toBe('virtual 0.0 s (bound 0.80 s): 0 / 4 leechers done; wall 5 s')
    expect(progressLine({ virtualMs: 61_000, done: 7, nodes: 7, boundMs: 60_000 }, 3_600_000)).toBe('virtual 61.0 s (bound 60.00 s): 7 / 7 leechers done; wall 60 min 00 s')
  })

  it('leaves the bound out when there is none (no upload at all would make it infinite)', () => {
    expect(progressLine({ virtualMs: 500, done: 1, nodes: 2, boundMs: Infinity }, 1000)).toBe('virtual 0.5 s: 1 / 2 leechers done; wall 1 s')
  })

  it('is fed by the run: ticks rise in virtual time, count leechers done, and carry the run\'s bound', () => {
    const ticks: Array<{ virtualMs: number, done: number, nodes: number, boundMs: number }> = []
    const r = runScenario({ nodes: 6, size: 16 * 1024 * 1024, upload: 5e6, seederUpload: 5e6, seed: 3, onTick: (t) => ticks.push(t) })
    expect(r.completed).toBe(6)
    expect(ticks.length).toBeGreaterThanOrEqual(3) // about one a virtual second: the bound is 3.4 s
    for (const [i, t] of ticks.entries()) {
      expect(t.boundMs).toBe(r.boundMs)
      expect(t.nodes).toBe(6)
      if (i > 0) { expect(t.virtualMs).toBeGreaterThan(ticks[i - 1].virtualMs); expect(t.done).toBeGreaterThanOrEqual(ticks[i - 1].done) }
    }
  })
})
