/**
 * Swarm benchmark: 1 seeder + N leechers (separate processes), every node's upload capped at U,
 * on a file of F bytes. Prints the time until every leecher is done, the Kumar–Ross lower bound
 *   T_min = max(F/u_s, N·F/(u_s + Σu_i), F/d_min)
 * (no download cap here, so F/d_min does not bind), the ratio time/T_min, and the seeder's
 * uploaded bytes / F, read from the tracker's node statuses. A script, not a test.
 *
 *   BENCH_SWARM_SIZE  F, k/M/G suffixes (default 256M)     BENCH_SWARM_N  leecher counts (default "4,8")
 *   BENCH_SWARM_UP    U in bytes/s (default 20M = 20e6)     BENCH_SWARM_RUNS  runs per N (default 1)
 *   BENCH_DIR         work folder (default <repo>/.bench)
 *   WebTorrent beside ours, in the same run, when ../shared/anchors is set up in /tmp/anchors
 *   (bash ../shared/anchors/setup.sh): the same file, N, and caps (BENCH_WEBTORRENT=0 to skip).
 * 1 MB = 1e6 bytes. Everything stays on 127.0.0.1.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { parseSize } from '../src/cli/main'
import { writeRandomFile } from '../src/cli/demo'
import { CHECKOUT, killAll, listening, spawnLp2p, type Spawned } from '../src/cli/spawn'
import { parseRate } from '../streams/rateLimit'

const RUN_TIMEOUT_MS = 600_000
const STATUS_TIMEOUT_MS = 15_000
const REPO = CHECKOUT
const say = (s: string): void => { process.stdout.write(s + '\n') }

interface NodeStatus { address: string, uploaded: number, downloaded: number }

async function status (tracker: string): Promise<NodeStatus[]> {
  const p = spawnLp2p(['status', '--tracker', tracker, '--json'])
  await p.exited
  await new Promise((r) => setImmediate(r))
  return (p.events[0] ?? []) as unknown as NodeStatus[]
}

export async function run (file: string, F: number, n: number, up: number, dir: string): Promise<{ secs: number, tmin: number, seederUp: number, leechersUp: number }> {
  const procs: Spawned[] = []
  try {
    const tracker = spawnLp2p(['tracker', '--port', '0', '--memory', '--json'])
    procs.push(tracker)
    const t = await listening(tracker)
    const seeder = spawnLp2p(['peer', '--share', path.dirname(file), '--tracker', t, '--upload-limit', String(up), '--json'])
    procs.push(seeder)
    const seederAddr = await listening(seeder, 120_000)
    const t0 = process.hrtime.bigint()
    const leechers = Array.from({ length: n }, (_, i) => {
      const out = path.join(dir, `leecher-${i}`)
      fs.rmSync(out, { recursive: true, force: true })
      const p = spawnLp2p(['get', path.basename(file), '--out', out, '--tracker', t, '--upload-limit', String(up), '--seed', '--json'])
      procs.push(p)
      return p
    })
    const doneAt = await Promise.all(leechers.map(async (l) => {
      await l.waitFor((e) => e.event === 'done', RUN_TIMEOUT_MS)
      return Number(process.hrtime.bigint() - t0) / 1e9
    }))
    const secs = Math.max(...doneAt)
    const want = (seeder.events.find((e) => e.event === 'shared') as { fileId: string }).fileId
    for (const l of leechers) {
      const d = l.events.find((e) => e.event === 'done') as { sha256: string }
      if (d.sha256 !== want) throw new Error(`a leecher finished with sha256 ${d.sha256}, expected ${want}`)
    }
    // counters arrive with heartbeats: wait until every leecher has reported its whole download
    let nodes: NodeStatus[] = []
    const deadline = Date.now() + STATUS_TIMEOUT_MS
    while (Date.now() < deadline) {
      nodes = await status(t)
      if (nodes.filter((x) => x.address !== seederAddr && x.downloaded >= F).length === n && (nodes.find((x) => x.address === seederAddr)?.uploaded ?? 0) > 0) break
      await new Promise((r) => setTimeout(r, 500))
    }
    // one more heartbeat period, so the last uploads are counted too
    await new Promise((r) => setTimeout(r, 3500))
    nodes = await status(t)
    const seederUp = nodes.find((x) => x.address === seederAddr)?.uploaded ?? NaN
    const leechersUp = nodes.filter((x) => x.address !== seederAddr).reduce((s, x) => s + x.uploaded, 0)
    const tmin = Math.max(F / up, n * F / (up + n * up))
    return { secs, tmin, seederUp, leechersUp }
  } finally {
    await Promise.all(procs.map((p) => p.stop()))
    killAll()
  }
}

const WT_DIR = process.env.ANCHOR_DIR ?? '/tmp/anchors'

/** WebTorrent 2.8.5 (the anchors' harness) on the same swarm: total time and seeder upload / F, or null. */
function webtorrent (file: string, n: number, up: number): { secs: number, seederUp: number } | null {
  if (process.env.BENCH_WEBTORRENT === '0' || !fs.existsSync(path.join(WT_DIR, 'node_modules', 'webtorrent'))) return null
  const r = spawnSync(process.execPath, ['wt_swarm.mjs', `--leechers=${n}`, '--runs=1', `--up=${up}`, `--file=${file}`, '--timeout=300'], { cwd: WT_DIR, encoding: 'utf8', timeout: RUN_TIMEOUT_MS })
  const total = /run 1: N=\d+ total=([\d.]+) s/.exec(r.stdout ?? '')
  const seeder = /seeder uploaded \/ F: .*median=([\d.]+)/.exec(r.stdout ?? '')
  if (total === null || seeder === null) { say(`webtorrent: no result (exit ${String(r.status)}): ${(r.stdout ?? '').split('\n').slice(-3).join(' | ')}`); return null }
  return { secs: Number(total[1]), seederUp: Number(seeder[1]) }
}

async function main (): Promise<void> {
  const F = parseSize(process.env.BENCH_SWARM_SIZE ?? '256M')
  const up = parseRate(process.env.BENCH_SWARM_UP ?? '20M')
  const ns = (process.env.BENCH_SWARM_N ?? '4,8').split(',').map(Number).filter((x) => Number.isInteger(x) && x > 0 && x <= 32)
  const runs = Math.min(10, Math.max(1, Number(process.env.BENCH_SWARM_RUNS ?? 1)))
  const dir = path.resolve(process.env.BENCH_DIR ?? path.join(REPO, '.bench'), 'swarm')
  fs.mkdirSync(path.join(dir, 'share'), { recursive: true })
  const file = path.join(dir, 'share', 'swarm.bin')
  if (!fs.existsSync(file) || fs.statSync(file).size !== F) writeRandomFile(file, F)
  say(`swarm benchmark: F = ${(F / 1e6).toFixed(1)} MB, every node's upload capped at ${(up / 1e6).toFixed(1)} MB/s, ${runs} run(s) per N`)
  say('N   time s   T_min s   time/T_min   seeder up/F   leechers up/F   aggregate MB/s   who')
  for (const n of ns) {
    for (let r = 0; r < runs; r++) {
      const x = await run(file, F, n, up, dir)
      say(`${String(n).padEnd(3)} ${x.secs.toFixed(2).padStart(6)}   ${x.tmin.toFixed(2).padStart(7)}   ${(x.secs / x.tmin).toFixed(3).padStart(10)}   ${(x.seederUp / F).toFixed(3).padStart(11)}   ${(x.leechersUp / F).toFixed(3).padStart(13)}   ${(n * F / 1e6 / x.secs).toFixed(0).padStart(14)}   lp2p`)
      const wt = webtorrent(file, n, up)
      if (wt !== null) say(`${String(n).padEnd(3)} ${wt.secs.toFixed(2).padStart(6)}   ${x.tmin.toFixed(2).padStart(7)}   ${(wt.secs / x.tmin).toFixed(3).padStart(10)}   ${wt.seederUp.toFixed(3).padStart(11)}   ${'?'.padStart(13)}   ${(n * F / 1e6 / wt.secs).toFixed(0).padStart(14)}   webtorrent 2.8.5 (same file, caps)`)
    }
  }
  say('targets: time/T_min ≤ 1.1 and seeder up/F ≤ 1.1. lp2p times include process start; WebTorrent\'s run from "go" with its processes already started.')
  say('WebTorrent 2.8.5 anchor from ../shared/anchors/README.md (1+4 at 20 MB/s, 512 MiB): 1.18 × T_min, seeder 1.21 × F')
}

if (require.main === module) main().catch((err) => { process.stderr.write(`bench-swarm: ${(err as Error).stack ?? String(err)}\n`); killAll(); process.exitCode = 1 })
