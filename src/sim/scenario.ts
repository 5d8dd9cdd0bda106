import { createHash } from 'node:crypto'
import { Subject, type Subscription } from 'rxjs'
import { NODE_TTL_MS } from '../limits'
import type { LeechOptions } from '../peer/leech'
import type { TrackerMessage, TrackerRequest } from '../protocol/messages'
import { fileMeta } from '../protocol/segmentation'
import { trackerFlow, type Endpoint, type Inbound } from '../tracker/flow'
import { MemoryFileStore, Registry } from '../tracker/registry'
import { SimNetwork } from './network'
import { SimNode } from './node'
import { PieceTags, simFile } from './pieces'
import { seeded } from './random'
import { SimScheduler } from './scheduler'

export interface ScenarioOptions {
  /** Leechers (downloading nodes). */
  nodes: number
  /** File size, bytes. */
  size: number
  /** Upload capacity of each leecher, bytes/s (unless `uploadClasses`). */
  upload: number
  /**
   * A fleet of mixed uplinks: each class's share of the leechers uploads at its rate (shares sum
   * to 1; counts are rounded by largest remainder and spread evenly along the leechers, whose
   * start times are drawn independently: see `assignUploads`). Overrides `upload` for leechers.
   */
  uploadClasses?: UploadClass[]
  /** Upload capacity of each initial seeder, bytes/s. */
  seederUpload: number
  /** Download capacity of every node, bytes/s (default: none). */
  download?: number
  /** One-way latency of every link, ms (default 1). */
  latencyMs?: number
  /** With this, each pair of hosts has its own latency, uniform in [latencyMs, maxLatencyMs] (drawn from the pair and the seed). */
  maxLatencyMs?: number
  /** Datagram loss probability (default 0). */
  loss?: number
  /** Fraction of leechers that crash once at a random moment and restart 1–5 s later, resuming. */
  churn?: number
  /** The first seeder crashes (for good) at this virtual time, ms. */
  crashSeederAtMs?: number
  /**
   * Probability that a leecher serves corrupt data (a bad disk, a hostile peer): it downloads
   * and verifies like any other, but every piece and hash list it sends fails its check. The
   * production defences deal with it: each bad piece is fetched elsewhere, a peer that sends
   * three is banned, a bad hash list drops its sender.
   */
  corrupt?: number
  /**
   * A network partition: at `atMs`, this fraction of the leechers can reach only each other (the
   * tracker and seeders are on the other side); at `healMs` the network is whole again.
   */
  partition?: { atMs: number, healMs: number, fraction: number }
  /** Initial seeders (default 1). */
  seeders?: number
  /** Seed of every random choice: same seed, same result. */
  seed?: number
  /** Leechers start within this many ms of each other (default 100). */
  startSpreadMs?: number
  /** Give up at this virtual time (default 20 × the bound + 60 s). */
  maxTimeMs?: number
  /** Tuning of the leech flow (defaults: production). */
  leech?: LeechOptions
  /** Called every 100 virtual ms: how many uplinks are sending, pieces stored in all (for studying a swarm). */
  trace?: (t: { virtualMs: number, busyUplinks: number, seederBusy: boolean, pieces: number }) => void
  /** Called about every virtual second with progress (for a CLI). */
  onTick?: (t: { virtualMs: number, done: number, nodes: number, boundMs: number }) => void
}

export interface UploadClass { upload: number, share: number }

export interface ScenarioResult {
  nodes: number
  seeders: number
  size: number
  blockSize: number
  pieces: number
  /** Leechers whose file verified, and those that did not finish by the time limit. */
  completed: number
  unfinished: number
  /** Per leecher: virtual ms from the scenario's start to `done`. */
  timeMs: { p50: number, p99: number, max: number }
  /** Per upload class (one unless `uploadClasses`), in their order: its leechers (none, if its share rounded to none) and their completion times. */
  byUpload: Array<{ upload: number, nodes: number, completed: number, timeMs: { p50: number, max: number } }>
  /** Kumar–Ross lower bound: max(F/u_s, N·F/(u_s + Σu), F/d). */
  boundMs: number
  /** max time / bound. */
  ratio: number
  /**
   * The bound at the grain of pieces (see `pieceBound`): what no scheme that forwards whole pieces
   * can beat. Null where it is not known in closed form (several seeders, unequal uploads or
   * pieces, a download cap below the upload).
   */
  pieceBoundMs: number | null
  /** max time / pieceBoundMs (null with it). */
  pieceRatio: number | null
  /** Bytes the initial seeders uploaded / F. */
  seederUploadPerF: number
  /** Control messages: datagrams (tracker) + peer requests and replies without a payload (probes, cluster queries, declines…). */
  controlMessages: number
  /** Replies that carried a piece (or a hash list). */
  pieceTransfers: number
  trackerRequests: number
  trackerRequestsByType: Record<string, number>
  peerRequests: number
  /** Error replies by code (BUSY and SEEDED are declines) and leech events summed over leechers. */
  errors: Record<string, number>
  /** Peer requests by type. */
  peerRequestsByType: Record<string, number>
  events: Record<string, number>
  /** Downloads that failed (e.g. no sources for a while) and were started again. */
  retries: number
  crashes: number
  /** With `corrupt`: leechers that served corrupt data, bad pieces the others caught, and how often one of them dropped a peer for bad data (a ban, or a bad hash list). */
  corrupt: { leechers: number, badPieces: number, droppedForBadData: number }
  /** Virtual time at which the run ended. */
  virtualMs: number
  /** Scheduler actions executed (simulation work). */
  actions: number
  /** Wall-clock ms and peak JS heap per simulated node: not part of the deterministic result. */
  wallMs: number
  peakHeapPerNodeBytes: number
}

/** Kumar–Ross: the least time any scheme needs to bring F bytes from seeders (u_s total) to N peers uploading u on average. */
export function kumarRoss (N: number, F: number, us: number, u: number, d = Infinity): number {
  return 1000 * Math.max(F / us, (N * F) / (us + N * u), F / d)
}

/**
 * Each of `n` leechers' upload under `classes`: counts by largest remainder (ties to the earlier
 * class), spread along the leechers by smooth weighted round robin (each class is picked as
 * evenly as its count allows: 10 % fast ones are every tenth leecher, not the first 20 %).
 * Throws on shares that are not positive or do not sum to 1.
 */
export function assignUploads (n: number, classes: UploadClass[]): number[] {
  const sum = classes.reduce((a, c) => a + c.share, 0)
  if (classes.length === 0 || classes.some((c) => !(c.share > 0) || !(c.upload > 0)) || Math.abs(sum - 1) > 1e-9) throw new RangeError('upload classes need positive rates and shares that sum to 1')
  const exact = classes.map((c) => c.share * n)
  const counts = exact.map(Math.floor)
  let left = n - counts.reduce((a, b) => a + b, 0)
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i)
  for (const { i } of order) { if (left-- <= 0) break; counts[i]++ }
  const current = counts.map(() => 0)
  const out: number[] = []
  for (let k = 0; k < n; k++) {
    let best = 0
    for (let i = 0; i < counts.length; i++) {
      current[i] += counts[i]
      if (current[i] > current[best]) best = i
    }
    current[best] -= n
    out.push(classes[best].upload)
  }
  return out
}

/**
 * The least time to bring a file of M equal pieces (each `blockSize` bytes) from one seeder to N
 * peers when every node uploads at u and downloads are not the limit: M + ⌊log2 N⌋ piece times
 * (Mundinger, Weber and Weiss, "Optimal scheduling of peer-to-peer file dissemination", J.
 * Scheduling 11, 2008: with equal upload capacities the uplink-sharing problem takes as long as
 * broadcasting M messages with simultaneous send and receive). The seeder's last piece out can
 * at best double its holders each piece time. Kumar–Ross is the limit of this as pieces shrink:
 * with few pieces and many peers the difference is large (64 pieces, 10,000 peers: 1.203 ×
 * Kumar–Ross). Null outside those conditions (elsewhere it is not the optimum: with a download
 * cap below the upload it is still a floor, but a loose one).
 */
export function pieceBound (N: number, size: number, blockSize: number, seeders: number, us: number, u: number, d = Infinity): number | null {
  if (seeders !== 1 || us !== u || !(u > 0) || !Number.isFinite(u) || d < u || N < 1 || size <= 0 || size % blockSize !== 0) return null
  return 1000 * (size / blockSize + 31 - Math.clz32(N)) * blockSize / u // ⌊log2 N⌋ exactly
}

/**
 * A host's place in the per-link latency draw: the tracker 0, the first seeder 1, leecher i 2 + i,
 * further seeders after the leechers. A leecher's links do not depend on how many seeders there
 * are: `--seeders 2` adds a host, it does not draw every leecher's links again.
 */
export function latencyIndex (role: 'seeder' | 'leecher', i: number, leechers: number): number {
  if (role === 'leecher') return 2 + i
  return i === 0 ? 1 : 1 + leechers + i
}

const hostOf = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]
}

/**
 * Run one scenario to completion in virtual time: a tracker (the production flow), `seeders`
 * nodes sharing one file and `nodes` leechers downloading it with the production leech flow,
 * over the simulated network. Deterministic for a given `seed` (except wall time and memory).
 */
export function runScenario (o: ScenarioOptions): ScenarioResult {
  // declines (BUSY, SEEDED) and timeouts are errors in the flows: millions of them in a big run,
  // and capturing a stack for each is a tenth of the run
  const stackLimit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try { return run(o) } finally { Error.stackTraceLimit = stackLimit }
}

function run (o: ScenarioOptions): ScenarioResult {
  const wall0 = Date.now()
  const heap0 = process.memoryUsage().heapUsed
  let peakHeap = heap0
  const random = seeded(o.seed ?? 1)
  const scheduler = new SimScheduler()
  const net = new SimNetwork({ scheduler, latencyMs: o.latencyMs ?? 1, maxLatencyMs: o.maxLatencyMs, latencySalt: o.seed ?? 1, loss: o.loss ?? 0, random })
  const tags = new PieceTags()
  const seeders = o.seeders ?? 1
  const F = o.size
  const uploads = o.uploadClasses === undefined ? null : assignUploads(o.nodes, o.uploadClasses)
  const uploadOf = (i: number): number => uploads === null ? o.upload : uploads[i]
  const meanUpload = uploads === null ? o.upload : uploads.reduce((a, b) => a + b, 0) / Math.max(1, o.nodes)
  const bound = kumarRoss(o.nodes, F, seeders * o.seederUpload, meanUpload, o.download ?? Infinity)
  const maxTime = o.maxTimeMs ?? 20 * bound + 60_000

  // ---- the tracker: the production flow over simulated datagrams
  const trackerHost = net.addHost('10.255.255.254', { upload: Infinity, download: Infinity })
  const tracker: Endpoint = { address: trackerHost.host, port: 7070 }
  const requests = new Subject<Inbound>()
  const byType: Record<string, number> = {}
  trackerHost.onDatagram = (msg: TrackerMessage, from) => {
    byType[msg.type] = (byType[msg.type] ?? 0) + 1
    requests.next({ msg: msg as TrackerRequest, from, bytes: 1500 })
  }
  const secret = Buffer.from(Array.from({ length: 32 }, () => Math.floor(random() * 256)))
  const subs: Subscription[] = []
  subs.push(trackerFlow(requests, { registry: new Registry(new MemoryFileStore(), NODE_TTL_MS, random), scheduler, secret })
    .subscribe((out) => net.sendDatagram(tracker, out.to, out.msg)))

  // ---- the file, cut as the tracker will cut it when the first seeder publishes
  const name = `sim-${F}.bin`
  const fileId = createHash('sha256').update(`${name}:${F}:${o.seed ?? 1}`).digest('hex')
  const file = simFile(fileMeta(name, fileId, F, 1))
  const corruptHosts = new Set<string>()
  net.payloadOf = (h, out) => {
    const m = out.msg
    const bad = corruptHosts.has(h.host)
    if (m.type === 'piece') return tags.payload(m.clusterName, Math.floor(m.offset / file.meta.blockSize), m.pieceSize, !bad)
    // hash lists are small and real (a corrupt host's: every byte flipped)
    const p = out.payload
    const list = p === undefined ? Buffer.alloc(0) : Buffer.concat(p.source.view(p.offset, p.length))
    if (bad) for (let i = 0; i < list.length; i++) list[i] ^= 0xff
    return list
  }

  const mk = (i: number, upload: number, index: number): SimNode => new SimNode({
    host: net.addHost(hostOf(i + 1), { upload, download: o.download ?? Infinity }, index),
    net, scheduler, tracker, random, tags, leech: o.leech,
  })
  const seedNodes = Array.from({ length: seeders }, (_, i) => mk(i, o.seederUpload, latencyIndex('seeder', i, o.nodes)))
  const leechers = Array.from({ length: o.nodes }, (_, i) => mk(seeders + i, uploadOf(i), latencyIndex('leecher', i, o.nodes)))
  for (const s of seedNodes) s.seed(file)
  // (drawn only when asked for: runs without it keep their random sequence, and results)
  if ((o.corrupt ?? 0) > 0) for (const l of leechers) if (random() < (o.corrupt ?? 0)) corruptHosts.add(l.host)
  const spread = o.startSpreadMs ?? 100
  for (const l of leechers) scheduler.schedule(() => l.download(name), random() * spread)

  if (o.partition !== undefined) {
    const { atMs, healMs, fraction } = o.partition
    const cut = leechers.filter(() => random() < fraction).map((l) => l.host)
    scheduler.schedule(() => net.partition(cut), atMs)
    scheduler.schedule(() => net.heal(), healMs)
  }

  let crashes = 0
  if (o.crashSeederAtMs !== undefined) scheduler.schedule(() => { seedNodes[0].crash(); crashes++ }, o.crashSeederAtMs)
  for (const l of leechers) {
    if ((o.churn ?? 0) <= 0 || random() >= (o.churn ?? 0)) continue
    const at = random() * bound
    const back = 1000 + random() * 4000
    scheduler.schedule(() => {
      if (l.doneAt !== null) return
      l.crash(); crashes++
      scheduler.schedule(() => l.restart(name), back)
    }, at)
  }

  // ---- run until every leecher is done (or the time limit)
  let ticks = 0
  scheduler.schedule(function (this: { schedule: (s?: unknown, d?: number) => void }) {
    const done = leechers.reduce((n, l) => n + (l.doneAt === null ? 0 : 1), 0)
    if (o.trace !== undefined) {
      const now = scheduler.now()
      o.trace({ virtualMs: now, busyUplinks: leechers.filter((l) => (net.host(l.host)?.upFree ?? 0) > now).length, seederBusy: (net.host(seedNodes[0].host)?.upFree ?? 0) > now, pieces: leechers.reduce((a, l) => a + l.piecesHeld, 0) })
    }
    if (++ticks % 10 === 0) {
      peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)
      o.onTick?.({ virtualMs: scheduler.now(), done, nodes: leechers.length, boundMs: bound })
    }
    if (done === leechers.length || scheduler.now() >= maxTime) { scheduler.stop(); return }
    this.schedule(undefined, 100)
  }, 100)
  scheduler.run(maxTime + 1000)
  peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)
  const virtualMs = scheduler.now()
  for (const n of [...seedNodes, ...leechers]) n.stop()
  for (const s of subs) s.unsubscribe()

  // completion times, sorted, and the last (NaN unless every one finished)
  const finished = (ls: SimNode[]): { times: number[], max: number } => {
    const times = ls.flatMap((l) => l.doneAt === null ? [] : [l.doneAt]).sort((a, b) => a - b)
    return { times, max: times.length === ls.length ? times[times.length - 1] ?? 0 : NaN }
  }
  const { times, max } = finished(leechers)
  const equalUploads = uploads === null || uploads.every((u) => u === uploads[0])
  const pb = !equalUploads ? null : pieceBound(o.nodes, F, file.meta.blockSize, seeders, o.seederUpload, uploadOf(0), o.download ?? Infinity)
  const rates = o.uploadClasses?.map((c) => c.upload) ?? [o.upload]
  const byUpload = rates.map((upload) => {
    const mine = leechers.filter((_, i) => uploadOf(i) === upload)
    const f = finished(mine)
    return { upload, nodes: mine.length, completed: f.times.length, timeMs: { p50: percentile(f.times, 0.5), max: mine.length > 0 ? f.max : NaN } }
  })
  const trackerRequests = Object.values(byType).reduce((a, b) => a + b, 0)
  const events = leechers.reduce<Record<string, number>>((a, l) => { for (const [k, v] of Object.entries(l.events)) a[k] = (a[k] ?? 0) + v; return a }, {})
  return {
    nodes: o.nodes,
    seeders,
    size: F,
    blockSize: file.meta.blockSize,
    pieces: file.meta.pieces,
    completed: times.length,
    unfinished: leechers.length - times.length,
    timeMs: { p50: percentile(times, 0.5), p99: percentile(times, 0.99), max },
    byUpload,
    boundMs: bound,
    ratio: max / bound,
    pieceBoundMs: pb,
    pieceRatio: pb === null ? null : max / pb,
    seederUploadPerF: seedNodes.reduce((a, s) => a + s.uploaded, 0) / F,
    controlMessages: net.stats.datagrams + 2 * net.stats.peerRequests - net.stats.payloads,
    pieceTransfers: net.stats.payloads,
    trackerRequests,
    trackerRequestsByType: byType,
    peerRequests: net.stats.peerRequests,
    errors: net.stats.errors,
    peerRequestsByType: net.stats.requests,
    events,
    retries: leechers.reduce((a, l) => a + l.retries, 0),
    crashes,
    corrupt: { leechers: corruptHosts.size, badPieces: events['piece-failed'] ?? 0, droppedForBadData: leechers.reduce((a, l) => a + l.droppedForBadData, 0) },
    virtualMs,
    actions: scheduler.executed,
    wallMs: Date.now() - wall0,
    peakHeapPerNodeBytes: Math.max(0, Math.round((peakHeap - heap0) / (o.nodes + seeders))),
  }
}
