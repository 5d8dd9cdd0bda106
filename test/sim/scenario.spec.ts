import { assignUploads, kumarRoss, latencyIndex, pieceBound, runScenario, type ScenarioOptions, type ScenarioResult } from '../../src/sim/scenario'

const MiB = 1024 * 1024
const base: ScenarioOptions = { nodes: 40, size: 16 * MiB, upload: 20e6, seederUpload: 20e6, seed: 7 }
/** The deterministic part of a result (wall time and heap are the machine's). */
const det = (r: ScenarioResult): Omit<ScenarioResult, 'wallMs' | 'peakHeapPerNodeBytes'> => { const { wallMs, peakHeapPerNodeBytes, ...rest } = r; return rest }

describe('swarm simulation (production flows, virtual time)', () => {
  it('the Kumar–Ross bound', () => {
    // 10 peers, 100 MB, seeder 10 MB/s, peers 1 MB/s: max(10 s, 1000/20 = 50 s)
    expect(kumarRoss(10, 100e6, 10e6, 1e6)).toBeCloseTo(50_000)
    // seeder-bound, and download-bound
    expect(kumarRoss(1, 100e6, 1e6, 10e6)).toBeCloseTo(100_000)
    expect(kumarRoss(2, 100e6, 100e6, 100e6, 1e6)).toBeCloseTo(100_000)
  })

  it('the bound in whole pieces: M + ⌊log2 N⌋ piece times, where it is known', () => {
    const B = 256 * 1024
    // one peer: the seeder sends every piece once, as Kumar–Ross says
    expect(pieceBound(1, 64 * B, B, 1, 1e6, 1e6)).toBeCloseTo(kumarRoss(1, 64 * B, 1e6, 1e6))
    // 3 peers, one piece: seeder → A, then seeder → B and A → C: two piece times
    expect(pieceBound(3, B, B, 1, 1e6, 1e6)).toBeCloseTo(2 * B / 1e3)
    // ⌊log2 N⌋ at and around powers of two
    expect(pieceBound(7, 64 * B, B, 1, 1e6, 1e6)).toBeCloseTo(66 * B / 1e3)
    expect(pieceBound(8, 64 * B, B, 1, 1e6, 1e6)).toBeCloseTo(67 * B / 1e3)
    expect(pieceBound(10_000, 64 * B, B, 1, 1e6, 1e6)).toBeCloseTo(77 * B / 1e3)
    // not known in closed form: several seeders, unequal uploads, a last piece shorter, a download cap below the upload
    expect(pieceBound(8, 64 * B, B, 2, 1e6, 1e6)).toBeNull()
    expect(pieceBound(8, 64 * B, B, 1, 2e6, 1e6)).toBeNull()
    expect(pieceBound(8, 64 * B - 1, B, 1, 1e6, 1e6)).toBeNull()
    expect(pieceBound(8, 64 * B, B, 1, 1e6, 1e6, 5e5)).toBeNull()
    expect(pieceBound(8, 64 * B, B, 1, 1e6, 1e6, 2e6)).toBeCloseTo(67 * B / 1e3)
  })

  let first: ScenarioResult
  beforeAll(() => { first = runScenario(base) })

  // a 16 MiB file at 20 MB/s is a 0.84 s bound: start-up (tracker handshake, discovery rounds) and
  // the leechers' idle uplinks early on weigh more here than at the sizes of `make bench-sim`
  it('every leecher completes, no faster than the bound allows and within 1.6× of it; the seeder sends fewer than 1.6 copies', () => {
    expect(first.completed).toBe(40)
    expect(first.unfinished).toBe(0)
    expect(first.ratio).toBeGreaterThanOrEqual(1) // nothing beats Kumar–Ross: a model that did would be wrong
    expect(first.ratio).toBeLessThan(1.6)
    // nor whole-piece forwarding: 64 pieces, 40 leechers, 69 piece times
    expect(first.pieceBoundMs).toBeCloseTo((64 + 5) * 256 * 1024 / 20e3)
    expect(first.pieceRatio).toBeGreaterThanOrEqual(1)
    expect(first.seederUploadPerF).toBeGreaterThanOrEqual(1) // every piece left the seeder at least once
    expect(first.seederUploadPerF).toBeLessThan(1.6)
    expect(first.timeMs.p50).toBeLessThanOrEqual(first.timeMs.p99)
    expect(first.trackerRequests).toBeGreaterThan(0)
    expect(first.pieceTransfers).toBeGreaterThanOrEqual(40 * first.pieces)
  })

  it('is deterministic: the same seed gives the same result, another seed another', () => {
    expect(det(runScenario(base))).toEqual(det(first))
    expect(det(runScenario({ ...base, seed: 8 })).timeMs).not.toEqual(first.timeMs)
  })

  it('the only seeder crashing after every piece went out once: the leechers finish from each other', () => {
    const r = runScenario({ ...base, crashSeederAtMs: 1.2 * (base.size / base.seederUpload) * 1000 }) // the first round takes F/us; the swarm ends at about 1.4 F/us
    expect(r.crashes).toBe(1)
    expect(r.completed).toBe(40)
  })

  it('one of two seeders crashing early: everyone finishes from the other', () => {
    const r = runScenario({ ...base, seeders: 2, crashSeederAtMs: 200 })
    expect(r.crashes).toBe(1)
    expect(r.completed).toBe(40)
  })

  it('the only seeder crashing before a copy is out: nobody completes (nothing is declared done unverified)', () => {
    const r = runScenario({ ...base, nodes: 10, crashSeederAtMs: 100, maxTimeMs: 30_000 })
    expect(r.completed).toBe(0)
    expect(r.unfinished).toBe(10)
    expect(r.retries).toBeGreaterThan(0) // downloads ran out of sources and were started again
    // each failed download is withdrawn from the tracker before it starts again, as Lp2pNode does
    expect(r.trackerRequestsByType.withdraw).toBe(r.retries)
  })

  it('with churn (a quarter of the leechers crash and restart) and 5 % datagram loss, all finish', () => {
    const r = runScenario({ ...base, churn: 0.25, loss: 0.05 })
    expect(r.crashes).toBeGreaterThan(0)
    expect(r.completed).toBe(40)
  })

  it('a tenth of the leechers serving corrupt data: every leecher still verifies its file, the bad pieces are caught and their senders dropped', () => {
    const r = runScenario({ ...base, corrupt: 0.1 })
    expect(r.corrupt.leechers).toBeGreaterThan(0)
    expect(r.completed).toBe(40)
    expect(r.events.done).toBe(40) // each whole file hashed to its id: no bad piece was kept
    expect(r.corrupt.badPieces).toBe(r.events['piece-failed'])
    expect(r.corrupt.badPieces).toBeGreaterThan(0)
    expect(r.corrupt.droppedForBadData).toBeGreaterThan(0)
    // a download takes at most three bad pieces from a peer before it bans it (every leecher downloads once here)
    expect(r.retries).toBe(0)
    expect(r.corrupt.badPieces).toBeLessThanOrEqual(3 * 40 * r.corrupt.leechers)
    expect(r.ratio).toBeLessThan(2)
    // without it, nobody is corrupt and nothing is rejected
    expect(first.corrupt).toEqual({ leechers: 0, badPieces: 0, droppedForBadData: 0 })
    expect(first.events['piece-failed']).toBeUndefined()
  })

  // without SEEDED_LOCK_MS (the seeder's send-once rule held until its first pass was over) this
  // took 1.33 × the bound: the pieces whose only copy had gone to a corrupt leecher waited for it
  it('a piece whose only copy went to a corrupt peer does not wait for the seeder\'s first pass: 64 MiB, 10 % corrupt, within 1.2 × the bound', () => {
    const r = runScenario({ nodes: 40, size: 64 * MiB, upload: 20e6, seederUpload: 20e6, seed: 1, corrupt: 0.1 })
    expect(r.corrupt.leechers).toBeGreaterThan(0)
    expect(r.corrupt.badPieces).toBeGreaterThan(0)
    expect(r.completed).toBe(40)
    expect(r.ratio).toBeLessThan(1.2)
  }, 120_000)

  it('upload classes: counts by largest remainder, each class spread evenly along the leechers', () => {
    expect(assignUploads(5, [{ upload: 100, share: 0.2 }, { upload: 20, share: 0.8 }])).toEqual([20, 20, 100, 20, 20])
    // a tenth: every tenth leecher, not the first fifth
    const tenth = assignUploads(1000, [{ upload: 100, share: 0.1 }, { upload: 20, share: 0.9 }])
    const at = tenth.flatMap((u, i) => u === 100 ? [i] : [])
    expect(at).toHaveLength(100)
    for (let k = 1; k < at.length; k++) expect(at[k] - at[k - 1]).toBe(10)
    expect(assignUploads(6, [{ upload: 1, share: 0.5 }, { upload: 2, share: 0.5 }])).toEqual([1, 2, 1, 2, 1, 2])
    // 7 × (1/3, 1/3, 1/3) = 2.33 each: the first class takes the odd one
    const seven = assignUploads(7, [{ upload: 1, share: 1 / 3 }, { upload: 2, share: 1 / 3 }, { upload: 3, share: 1 / 3 }])
    expect([1, 2, 3].map((u) => seven.filter((x) => x === u).length)).toEqual([3, 2, 2])
    expect(assignUploads(0, [{ upload: 1, share: 1 }])).toEqual([])
    expect(() => assignUploads(4, [{ upload: 1, share: 0.5 }, { upload: 2, share: 0.4 }])).toThrow(RangeError)
    expect(() => assignUploads(4, [{ upload: 1, share: 1.5 }, { upload: 2, share: -0.5 }])).toThrow(RangeError)
  })

  it('an upload class whose share rounds to no leecher is still reported (with none), in the order given', () => {
    const r = runScenario({ ...base, nodes: 3, uploadClasses: [{ upload: 50e6, share: 0.1 }, { upload: 20e6, share: 0.9 }] })
    expect(r.completed).toBe(3)
    expect(r.byUpload.map((c) => [c.upload, c.nodes, c.completed])).toEqual([[50e6, 0, 0], [20e6, 3, 3]])
    expect(r.byUpload[0].timeMs.max).toBeNaN()
    expect(r.byUpload[1].timeMs.max).toBe(r.timeMs.max)
  })

  it('a mixed fleet (a fifth at 100 MB/s) with latencies from 1 to 20 ms per link: all verify, the bound counts every uplink, each class has its times, and a near leecher does not start before the file is listed', () => {
    // (seed 2, all starting within 5 ms: leechers nearer the tracker than the seeder is ask for the
    // file before it is listed; 27 of them failed and started again a second later before the fix)
    const o: ScenarioOptions = { ...base, nodes: 30, seed: 2, startSpreadMs: 5, uploadClasses: [{ upload: 100e6, share: 0.2 }, { upload: 20e6, share: 0.8 }], maxLatencyMs: 20 }
    const r = runScenario(o)
    expect(r.completed).toBe(30)
    // 6 × 100 + 24 × 20 = 1080 MB/s of leecher uplinks; the seeder's 20 MB/s bounds it: F / 20 MB/s
    expect(r.boundMs).toBeCloseTo(kumarRoss(30, 16 * MiB, 20e6, 1080e6 / 30))
    expect(r.ratio).toBeGreaterThanOrEqual(1)
    expect(r.pieceBoundMs).toBeNull() // unequal uploads: not known in closed form
    expect(r.byUpload.map((c) => [c.upload, c.nodes, c.completed])).toEqual([[100e6, 6, 6], [20e6, 24, 24]])
    for (const c of r.byUpload) expect(c.timeMs.max).toBeLessThanOrEqual(r.timeMs.max)
    expect(Math.max(...r.byUpload.map((c) => c.timeMs.max))).toBe(r.timeMs.max)
    // (a leecher whose query reached the tracker before the seeder's publish asked again, not failed)
    expect(r.retries).toBe(0)
    expect(r.trackerRequestsByType.query_files).toBeGreaterThan(30)
    expect(det(runScenario(o))).toEqual(det(r))
    // the same fleet with every link at 1 ms: another run
    expect(det(runScenario({ ...o, maxLatencyMs: undefined })).timeMs).not.toEqual(r.timeMs)
  })

  it('a download cap binds: the time follows F/d', () => {
    const r = runScenario({ ...base, nodes: 10, download: 5e6 })
    expect(r.boundMs).toBeCloseTo(base.size / 5e6 * 1000)
    expect(r.completed).toBe(10)
    expect(r.ratio).toBeGreaterThanOrEqual(1)
    expect(r.ratio).toBeLessThan(1.5)
  })

  it('a partition cutting 30 % of the leechers off from 0.3 s to 2.5 s: the rest finish meanwhile, everyone after the heal', () => {
    const r = runScenario({ ...base, partition: { atMs: 300, healMs: 2500, fraction: 0.3 } })
    expect(r.completed).toBe(40)
    // the cut-off ones could not finish before the heal (without a partition all are done by 1.3 s)
    expect(r.timeMs.max).toBeGreaterThan(2500)
    // the others did not wait for them (they did while one silent source held back every re-probe round)
    expect(r.timeMs.p50).toBeLessThan(2000)
  })
})

/** The issue's targets (≤ 1.2 × Kumar–Ross, seeder ≤ 1.2 F) on `lp2p simulate`'s defaults: they hold from 100 leechers to 10,000 (see README). */
describe('the scale targets, on the simulator\'s default scenario (100 leechers, 64 MiB, 20 MB/s, 1 ms)', () => {
  it('every leecher verifies its file within 1.2 × the bound, and the seeder sends at most 1.2 F', () => {
    const r = runScenario({ nodes: 100, size: 64 * MiB, upload: 20e6, seederUpload: 20e6, latencyMs: 1, seed: 1 })
    expect(r.completed).toBe(100)
    expect(r.events.done).toBe(100) // each one's whole-file hash matched
    expect(r.ratio).toBeGreaterThanOrEqual(1)
    expect(r.ratio).toBeLessThanOrEqual(1.2)
    expect(r.seederUploadPerF).toBeGreaterThanOrEqual(1)
    expect(r.seederUploadPerF).toBeLessThanOrEqual(1.2)
    // and within 1.2 × the bound in whole pieces (256 pieces + ⌊log2 100⌋ = 262 piece times)
    expect(r.pieceBoundMs).toBeCloseTo(262 * 256 * 1024 / 20e3)
    expect(r.pieceRatio).toBeLessThanOrEqual(1.2)
  }, 180_000)
})

describe('latencyIndex (a host\'s place in the per-link latency draw)', () => {
  it('gives leechers the same places whatever the number of seeders, and every host its own', () => {
    const places = (seeders: number, leechers: number): number[] => [
      0, // the tracker
      ...Array.from({ length: seeders }, (_, i) => latencyIndex('seeder', i, leechers)),
      ...Array.from({ length: leechers }, (_, i) => latencyIndex('leecher', i, leechers)),
    ]
    const one = places(1, 50)
    const three = places(3, 50)
    expect(three.slice(1 + 3)).toEqual(one.slice(1 + 1)) // each leecher where it was with one seeder
    expect(new Set(three).size).toBe(three.length)
    // with one seeder, the order hosts are added (as before: runs with one seeder are unchanged)
    expect(one).toEqual(one.map((_, i) => i))
  })
})

