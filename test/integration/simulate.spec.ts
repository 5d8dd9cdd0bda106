import os from 'node:os'
import { simHeapBytes } from '../../src/cli/simHeap'
import { perTest, spawnLp2p } from './helpers'

/** `lp2p simulate` as a user runs it: a real process, its JSON on stdout, its exit status. */
describe('lp2p simulate (a real process)', () => {
  const { procs } = perTest('simulate')

  it('a run of 500 nodes runs itself again with a bigger young generation, and prints the child\'s result', async () => {
    const sim = spawnLp2p(['simulate', '--nodes', '500', '--size', '1M', '--seed', '3', '--json'], { LP2P_LOG_LEVEL: 'info' })
    procs.push(sim)
    expect(await sim.exited).toBe(0)
    await new Promise((r) => setImmediate(r))
    expect(sim.events).toHaveLength(1)
    expect(sim.events[0]).toMatchObject({ nodes: 500, completed: 500, unfinished: 0, pieces: 4 })
    expect((sim.events[0].timeMs as { max: number }).max).toBeGreaterThanOrEqual(sim.events[0].boundMs as number)
    // 4 pieces to 500 leechers: at least 4 + 8 piece times, three times Kumar–Ross
    expect((sim.events[0].timeMs as { max: number }).max).toBeGreaterThanOrEqual(sim.events[0].pieceBoundMs as number)
    expect(sim.events[0].pieceBoundMs as number).toBeCloseTo(3 * (sim.events[0].boundMs as number))
    const rerun = sim.stderr.map((l) => JSON.parse(l) as { msg?: string, flags?: string[] }).filter((l) => l.flags !== undefined)
    expect(rerun).toHaveLength(1) // once: the child does not run itself again
    expect(rerun[0].flags).toContain('--max-semi-space-size=128')
  }, 120_000)

  // (a machine with more than about 170 GiB could hold it: nothing to refuse there)
  const tooBig = simHeapBytes(100_000) > 0.85 * os.totalmem()
  ;(tooBig ? it : it.skip)('refuses a run this machine cannot hold, at once, with a usage error', async () => {
    const sim = spawnLp2p(['simulate', '--nodes', '100000'])
    procs.push(sim)
    expect(await sim.exited).toBe(2)
    expect(sim.stderr.join('\n')).toMatch(/simulating 100000 nodes needs about \d+\.\d GiB of memory; this machine has/)
    expect(sim.events).toEqual([])
  })
})

describe('lp2p simulate --seed (a real process, twice)', () => {
  const { procs } = perTest('simulate-seed')
  const run = async (seed: string): Promise<Record<string, unknown>> => {
    const sim = spawnLp2p(['simulate', '--nodes', '20', '--size', '4M', '--churn', '0.2', '--seed', seed, '--json'])
    procs.push(sim)
    expect(await sim.exited).toBe(0)
    await new Promise((r) => setImmediate(r))
    expect(sim.events).toHaveLength(1)
    const { wallMs, peakHeapPerNodeBytes, ...rest } = sim.events[0]
    expect(typeof wallMs).toBe('number')
    expect(typeof peakHeapPerNodeBytes).toBe('number')
    return rest
  }

  it('prints the same result for the same seed, bit for bit (wall time and heap aside), and another for another seed', async () => {
    const a = await run('5')
    const b = await run('5')
    expect(b).toEqual(a)
    expect(a).toMatchObject({ nodes: 20, completed: 20, unfinished: 0 })
    const c = await run('6')
    expect(c.timeMs).not.toEqual(a.timeMs)
  }, 60_000)
})

describe('lp2p simulate --corrupt (a real process)', () => {
  const { procs } = perTest('simulate-corrupt')

  it('reports the corrupt leechers, the bad pieces caught and the peers dropped for them, and every leecher done', async () => {
    const sim = spawnLp2p(['simulate', '--nodes', '20', '--size', '4M', '--corrupt', '0.2', '--seed', '4', '--json'])
    procs.push(sim)
    expect(await sim.exited).toBe(0)
    await new Promise((r) => setImmediate(r))
    expect(sim.events).toHaveLength(1)
    const r = sim.events[0] as { completed: number, corrupt: { leechers: number, badPieces: number, droppedForBadData: number }, events: Record<string, number> }
    expect(r.completed).toBe(20)
    expect(r.corrupt.leechers).toBeGreaterThan(0)
    expect(r.corrupt.badPieces).toBeGreaterThan(0)
    expect(r.corrupt.badPieces).toBe(r.events['piece-failed'])
    expect(r.corrupt.droppedForBadData).toBeGreaterThan(0)
  }, 60_000)

  it('refuses a probability outside 0..1 with a usage error', async () => {
    const sim = spawnLp2p(['simulate', '--corrupt', '1.5'])
    procs.push(sim)
    expect(await sim.exited).toBe(2)
    expect(sim.stderr.join('\n')).toMatch(/--corrupt "1.5" is not a number in 0..1/)
  })
})

describe('lp2p simulate with a mixed fleet and per-link latencies (a real process)', () => {
  const { procs } = perTest('simulate-mixed')

  it('--upload 100M:0.25,20M --latency 1-10: every leecher done, each upload class with its times, the bound over every uplink', async () => {
    const sim = spawnLp2p(['simulate', '--nodes', '20', '--size', '4M', '--upload', '100M:0.25,20M', '--latency', '1-10', '--seed', '3', '--json'])
    procs.push(sim)
    expect(await sim.exited).toBe(0)
    await new Promise((r) => setImmediate(r))
    expect(sim.events).toHaveLength(1)
    const r = sim.events[0] as { completed: number, boundMs: number, pieceBoundMs: number | null, byUpload: Array<{ upload: number, nodes: number, completed: number }> }
    expect(r.completed).toBe(20)
    expect(r.byUpload.map((c) => [c.upload, c.nodes, c.completed])).toEqual([[100e6, 5, 5], [20e6, 15, 15]])
    // seeder at the first rate (100 MB/s): max(F / 100 MB/s, 20 F / (100 + 5 × 100 + 15 × 20) MB/s)
    const F = 4 * 1024 * 1024
    expect(r.boundMs).toBeCloseTo(1000 * Math.max(F / 100e6, 20 * F / 900e6))
    expect(r.pieceBoundMs).toBeNull()
  }, 60_000)

  it('the table gives each class its own row', async () => {
    const sim = spawnLp2p(['simulate', '--nodes', '8', '--size', '2M', '--upload', '50M:0.5,10M', '--latency', '1-5'])
    procs.push(sim)
    expect(await sim.exited).toBe(0)
    await new Promise((r) => setImmediate(r))
    const out = sim.events.map((e) => e.line).join('\n') // (the table: lines that are not JSON)
    expect(out).toMatch(/upload 50 MB\/s × 50 %, 10 MB\/s × 50 %, seeder 50 MB\/s, latency 1–5 ms per link/)
    expect(out).toMatch(/upload 50 MB\/s \(4\): p50 \/ max/)
    expect(out).toMatch(/upload 10 MB\/s \(4\): p50 \/ max/)
  }, 60_000)
})
