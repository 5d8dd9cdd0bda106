import { spawn } from 'node:child_process'
import os from 'node:os'
import v8 from 'node:v8'
import { type Command, Option } from 'commander'
import { UsageError } from '../errors'
import { PIECE_TIMEOUT_MS, QUERY_TIMEOUT_MS } from '../limits'
import { segment } from '../protocol/segmentation'
import { parseRate } from '../../streams/rateLimit'
import type { ScenarioResult, UploadClass } from '../sim/scenario'
import { log } from '../log'
import { bytes, parseDuration, table } from './format'
import { simNodeFlags } from './simHeap'
import { LP2P_BIN } from './spawn'

/** Set in a simulation re-run with bigger heap flags: it does not re-run itself again. */
const SIM_CHILD_ENV = 'LP2P_SIM_CHILD'

/** Run this `lp2p` command line again under node `flags`, in the foreground; resolves to its exit code. */
function rerun (flags: string[], args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, ...process.execArgv, LP2P_BIN, ...args], { stdio: 'inherit', env: { ...process.env, [SIM_CHILD_ENV]: '1' } })
    // a signal to this process goes to the child too (Ctrl-C reaches both, in one process group;
    // a kill -INT to this pid only this one): wait for it to end and report that
    const forward = (sig: NodeJS.Signals): void => { child.kill(sig) }
    process.on('SIGINT', forward)
    process.on('SIGTERM', forward)
    const done = (): void => { process.off('SIGINT', forward); process.off('SIGTERM', forward) }
    child.once('error', (err) => { done(); reject(err) })
    child.once('exit', (code, signal) => { done(); resolve(code ?? 128 + (signal === null ? 1 : (os.constants.signals[signal] ?? 1))) })
  })
}

function num (what: string, min: number, max: number, integer = false): (v: string) => number {
  return (v: string) => {
    const n = Number(v)
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) throw new UsageError(`${what} "${v}" is not ${integer ? 'an integer' : 'a number'} in ${min}..${max}`)
    return n
  }
}
function rate (v: string): number {
  try { const r = parseRate(v); if (!Number.isFinite(r) || r <= 0) throw new Error(`rate "${v}" is not a finite number of bytes per second above 0 (a simulated link has a capacity)`); return r } catch (err) { throw new UsageError((err as Error).message) }
}
/**
 * "20M" → one class; "100M:0.1,20M" → 10 % of the leechers at 100 MB/s, the rest at 20 MB/s (a
 * rate without a share takes an equal part of what the others leave).
 */
export function parseUploads (v: string): UploadClass[] {
  const parts = v.split(',').map((p) => p.trim())
  const bad = (why: string): UsageError => new UsageError(`--upload "${v}": ${why} (a rate, or rate:share,… e.g. 100M:0.1,20M)`)
  const classes = parts.map((p) => {
    const [r, share, ...more] = p.split(':')
    if (more.length > 0 || r === '') throw bad(`"${p}" is not rate or rate:share`)
    const upload = rate(r)
    if (share === undefined) return { upload, share: NaN }
    const f = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(share) ? Number(share) : NaN
    if (!(f > 0 && f <= 1)) throw bad(`share "${share}" is not a number in (0, 1]`)
    return { upload, share: f }
  })
  const given = classes.reduce((a, c) => a + (Number.isNaN(c.share) ? 0 : c.share), 0)
  const open = classes.filter((c) => Number.isNaN(c.share)).length
  const total = +given.toFixed(9)
  if (open === 0 ? Math.abs(given - 1) > 1e-9 : given >= 1 - 1e-9) throw bad(open === 0 ? `shares sum to ${total}, not 1` : `shares sum to ${total}, leaving nothing for the rates without one`)
  for (const c of classes) if (Number.isNaN(c.share)) c.share = (1 - given) / open
  if (new Set(classes.map((c) => c.upload)).size !== classes.length) throw bad('a rate is listed twice')
  return classes
}

/**
 * Longest one-way latency simulated. The flows' timeouts are a LAN's: a cluster query, a TCP
 * connect and a round trip, must be answered within QUERY_TIMEOUT_MS (2 s); from 500 ms one way
 * every neighbour times out and no leecher finishes.
 */
export const MAX_SIM_LATENCY_MS = 400

/** "1" → every link 1 ms; "1-20" → each link's own, between 1 and 20 ms. */
export function parseLatency (v: string): { min: number, max: number } {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?)\s*)?$/.exec(v)
  const min = Number(m?.[1])
  const max = m?.[2] === undefined ? min : Number(m[2])
  if (m === null || !(min <= max)) throw new UsageError(`--latency "${v}" is not ms or min-max ms (e.g. 1, or 1-20)`)
  if (max > MAX_SIM_LATENCY_MS) throw new UsageError(`--latency "${v}": at most ${MAX_SIM_LATENCY_MS} ms one way (the flows' timeouts are a LAN's: a cluster query, connect and round trip, must be answered within ${QUERY_TIMEOUT_MS / 1000} s)`)
  return { min, max }
}

/**
 * A run in which no piece could arrive in time: the slowest link every piece must cross (the
 * seeder's uplink, every downlink, the fastest leecher uplink) takes longer than PIECE_TIMEOUT_MS
 * for one piece, so every asker drops its holder and no leecher finishes. The reason, or null.
 */
export function tooSlowForPieces (size: number, o: { upload: UploadClass[], seederUpload?: number, download?: number }): string | null {
  const { blockSize } = segment(size, 1)
  const links: [string, number][] = [
    ['--seeder-upload', o.seederUpload ?? o.upload[0].upload],
    ['--upload', Math.max(...o.upload.map((c) => c.upload))],
    ['--download', o.download ?? Infinity],
  ]
  const [flag, slowest] = links.reduce((a, b) => b[1] < a[1] ? b : a)
  const ms = blockSize * 1000 / slowest
  if (ms <= PIECE_TIMEOUT_MS) return null
  return `${flag}: a piece of this file (${bytes(blockSize)}) takes ${(ms / 1000).toFixed(1)} s on a ${mbs(slowest)} link, longer than the ${PIECE_TIMEOUT_MS / 1000} s an asker waits for a piece: no leecher could finish (give at least ${mbs(Math.ceil(blockSize * 1000 / PIECE_TIMEOUT_MS))})`
}

/**
 * The line a run shows on a terminal while it goes (every second of virtual time): how far in
 * virtual time against the Kumar–Ross bound, leechers done, wall time so far. A 10,000-node run
 * takes most of an hour; this says how far it got.
 */
export function progressLine (t: { virtualMs: number, done: number, nodes: number, boundMs: number }, wallMs: number): string {
  const s = Math.round(wallMs / 1000)
  const wall = s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`
  const bound = Number.isFinite(t.boundMs) ? ` (bound ${(t.boundMs / 1000).toFixed(2)} s)` : ''
  return `virtual ${(t.virtualMs / 1000).toFixed(1)} s${bound}: ${t.done} / ${t.nodes} leechers done; wall ${wall}`
}

/** "1s,4s,0.3" → a partition from 1 s to 4 s of 30 % of the leechers. */
export function parsePartition (v: string): { atMs: number, healMs: number, fraction: number } {
  const [at, heal, fraction, ...rest] = v.split(',')
  const f = Number(fraction)
  if (rest.length > 0 || at === undefined || heal === undefined || !Number.isFinite(f) || f <= 0 || f >= 1) throw new UsageError(`--partition "${v}" is not at,heal,fraction (e.g. 1s,4s,0.3; fraction between 0 and 1)`)
  const atMs = parseDuration(at)
  const healMs = parseDuration(heal)
  if (healMs <= atMs) throw new UsageError(`--partition "${v}": heal must come after at`)
  return { atMs, healMs, fraction: f }
}

const opt = (flags: string, what: string, env: string): Option => new Option(flags, what).env(env)

/** `lp2p simulate`: a whole swarm in one process, in virtual time, on the production flows. */
export function addSimulate (p: Command, parseSize: (v: string) => number, out: (s: string) => void, argv: readonly string[]): void {
  p.command('simulate')
    .description('simulate a swarm in virtual time: one tracker, seeders and N leechers running the production flows over a modelled network; prints completion times against the Kumar–Ross bound and, with one seeder, equal uploads, equal pieces (a size that is a multiple of the block) and downloads no slower than uploads, the bound in whole pieces (M + ⌊log2 N⌋ piece times). A run of 500 nodes or more runs itself again once with the heap it needs (node flags --max-old-space-size, --max-semi-space-size; flags you give node win); one that cannot fit in this machine\'s memory is refused')
    .addOption(opt('-n, --nodes <n>', 'leechers', 'LP2P_SIM_NODES').default(100).argParser(num('--nodes', 1, 100_000, true)))
    .addOption(opt('--size <bytes>', 'file size (k/M/G/T suffixes, powers of 1024)', 'LP2P_SIM_SIZE').default(64 * 1024 * 1024, '64M').argParser((v) => { const n = parseSize(v); if (n < 1) throw new UsageError('--size must be at least 1 byte'); return n }))
    .addOption(opt('--upload <rates>', 'upload capacity of each leecher, bytes/s (k/M/G = 10^3.., Ki/Mi/Gi = 2^10..); a mixed fleet as rate:share,… (e.g. 100M:0.1,20M: 10 % at 100 MB/s, the rest at 20; the table then gives each class its times)', 'LP2P_SIM_UPLOAD').default([{ upload: 20e6, share: 1 }], '20M').argParser(parseUploads))
    .addOption(opt('--seeder-upload <rate>', 'upload capacity of each seeder (default: the first --upload rate)', 'LP2P_SIM_SEEDER_UPLOAD').argParser(rate))
    .addOption(opt('--download <rate>', 'download capacity of every node (default: none)', 'LP2P_SIM_DOWNLOAD').argParser(rate))
    .addOption(opt('--seeders <n>', 'initial seeders', 'LP2P_SIM_SEEDERS').default(1).argParser(num('--seeders', 1, 1000, true)))
    .addOption(opt('--latency <ms>', 'one-way latency of every link, ms (at most 400: the flows\' timeouts are a LAN\'s); or min-max (e.g. 1-20): each pair of hosts gets its own, uniform in that range, fixed for the run (drawn from the pair and --seed)', 'LP2P_SIM_LATENCY').default({ min: 1, max: 1 }, '1').argParser(parseLatency))
    .addOption(opt('--loss <p>', 'probability a datagram (tracker traffic) is lost', 'LP2P_SIM_LOSS').default(0).argParser(num('--loss', 0, 0.9)))
    .addOption(opt('--churn <p>', 'probability that a leecher crashes, once, at a random moment before the Kumar–Ross bound (unless done by then), and restarts 1–5 s later, resuming', 'LP2P_SIM_CHURN').default(0).argParser(num('--churn', 0, 1)))
    .addOption(opt('--corrupt <p>', 'probability that a leecher serves corrupt data (it downloads like the others, but every piece and hash list it sends fails its check): bans and fallbacks at work', 'LP2P_SIM_CORRUPT').default(0).argParser(num('--corrupt', 0, 1)))
    .addOption(opt('--crash-seeder-at <time>', 'the first seeder crashes for good at this virtual time (30, 30s, 1500ms, 2m)', 'LP2P_SIM_CRASH_SEEDER_AT').argParser(parseDuration))
    .addOption(opt('--partition <at,heal,fraction>', 'cut this fraction of the leechers off (from the tracker, the seeders and the rest) from time at to time heal, e.g. 1s,4s,0.3', 'LP2P_SIM_PARTITION').argParser(parsePartition))
    .addOption(opt('--seed <n>', 'seed of every random choice: the same seed gives the same result, bit for bit', 'LP2P_SIM_SEED').default(1).argParser(num('--seed', 0, 2 ** 32 - 1, true)))
    .addOption(opt('--json', 'print the result as one JSON object', 'LP2P_JSON'))
    .action(async (o: { nodes: number, size: number, upload: UploadClass[], seederUpload?: number, download?: number, seeders: number, latency: { min: number, max: number }, loss: number, churn: number, corrupt: number, crashSeederAt?: number, partition?: { atMs: number, healMs: number, fraction: number }, seed: number, json?: boolean }) => {
      const slow = tooSlowForPieces(o.size, o)
      if (slow !== null) throw new UsageError(slow)
      // a big run needs a bigger heap than node gives by default: run again with it (once)
      if (process.env[SIM_CHILD_ENV] === undefined) {
        const flags = simNodeFlags(o.nodes, { heapLimit: v8.getHeapStatistics().heap_size_limit, totalMemory: os.totalmem(), nodeFlags: [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ') })
        if (flags !== null) {
          log.info({ flags }, 'simulation: running again with these node flags (heap for this many nodes)')
          process.exitCode = await rerun(flags, argv.slice(2))
          return
        }
      }
      // (on a terminal, with --json too: the JSON goes to stdout once the line is cleared)
      const tty = process.stderr.isTTY
      const wall0 = Date.now()
      // (the simulator is loaded by this command only: the others start sooner without it)
      const { runScenario } = require('../sim/scenario') as typeof import('../sim/scenario')
      const r = runScenario({
        nodes: o.nodes,
        size: o.size,
        upload: o.upload[0].upload,
        ...(o.upload.length > 1 ? { uploadClasses: o.upload } : {}),
        seederUpload: o.seederUpload ?? o.upload[0].upload,
        download: o.download,
        seeders: o.seeders,
        latencyMs: o.latency.min,
        ...(o.latency.max > o.latency.min ? { maxLatencyMs: o.latency.max } : {}),
        loss: o.loss,
        churn: o.churn,
        corrupt: o.corrupt,
        crashSeederAtMs: o.crashSeederAt,
        partition: o.partition,
        seed: o.seed,
        onTick: tty ? (t) => process.stderr.write(`\r\x1b[K${progressLine(t, Date.now() - wall0)}`) : undefined,
      })
      if (tty) process.stderr.write('\r\x1b[K')
      out(o.json === true ? JSON.stringify(r) + '\n' : render(r, o))
      if (r.unfinished > 0) {
        process.stderr.write(`lp2p: ${r.unfinished} of ${r.nodes} leechers did not finish by virtual ${(r.virtualMs / 1000).toFixed(1)} s\n`)
        process.exitCode = 1
      }
    })
}

const secs = (ms: number): string => Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : '—'
const mbs = (r: number): string => r < 1e5 ? `${+(r / 1e3).toPrecision(3)} kB/s` : `${(r / 1e6).toFixed(r < 1e7 ? 1 : 0)} MB/s`
/** A class's rate, as precise as it takes to tell it from the others (20M and 20.4M are both "20 MB/s" to `mbs`). */
const classRate = (r: number): string => `${+(r / 1e6).toPrecision(6)} MB/s`

function render (r: ScenarioResult, o: { upload: UploadClass[], seederUpload?: number, latency: { min: number, max: number } }): string {
  const uploads = o.upload.length === 1 ? mbs(o.upload[0].upload) : o.upload.map((c) => `${classRate(c.upload)} × ${+(c.share * 100).toFixed(1)} %`).join(', ')
  const latency = o.latency.max > o.latency.min ? `${o.latency.min}–${o.latency.max} ms per link` : `${o.latency.min} ms`
  return `simulated ${r.nodes} leechers + ${r.seeders} seeder(s), ${bytes(r.size)} (${r.pieces} × ${bytes(r.blockSize)}), upload ${uploads}, seeder ${mbs(o.seederUpload ?? o.upload[0].upload)}, latency ${latency}\n` +
    table(['', 'VALUE'], [
      ['leechers done', `${r.completed} / ${r.nodes}`],
      ['time p50 / p99 / max', `${secs(r.timeMs.p50)} / ${secs(r.timeMs.p99)} / ${secs(r.timeMs.max)}`],
      ...(r.byUpload.length < 2 ? [] : r.byUpload.map((c) => [`  upload ${classRate(c.upload)} (${c.nodes}): p50 / max`, c.nodes === 0 ? 'no leecher in this class' : `${secs(c.timeMs.p50)} / ${secs(c.timeMs.max)}`])),
      ['Kumar–Ross bound', secs(r.boundMs)],
      ['ratio max / bound', Number.isFinite(r.ratio) ? r.ratio.toFixed(3) : '—'],
      ...(r.pieceBoundMs === null ? [] : [
        ['bound in whole pieces (M + ⌊log2 N⌋)', secs(r.pieceBoundMs)],
        ['ratio max / piece bound', r.pieceRatio !== null && Number.isFinite(r.pieceRatio) ? r.pieceRatio.toFixed(3) : '—'],
      ]),
      ['seeder upload / F', r.seederUploadPerF.toFixed(3)],
      ['control messages', `${r.controlMessages} (tracker requests ${r.trackerRequests}); ${r.pieceTransfers} piece transfers`],
      ['crashes / restarted downloads', `${r.crashes} / ${r.retries}`],
      ...(r.corrupt.leechers === 0 ? [] : [['corrupt leechers / bad pieces caught / peers dropped for bad data', `${r.corrupt.leechers} / ${r.corrupt.badPieces} / ${r.corrupt.droppedForBadData}`]]),
      ['wall time', secs(r.wallMs)],
      ['peak heap per node', bytes(r.peakHeapPerNodeBytes)],
    ])
}
