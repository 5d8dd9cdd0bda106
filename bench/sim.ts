/**
 * Fidelity of the simulator: one small swarm run twice in the same benchmark, once as real
 * processes on 127.0.0.1 (tracker, seeder, N `get --seed`, every upload capped at U, as in
 * `make bench-swarm`) and once in `lp2p simulate` with the same N, F and caps; prints both
 * times, their ratio (target: within 20 %), and the simulator's own figures at larger N.
 *
 *   BENCH_SIM_N     leechers for the real-vs-simulated run (default 4)
 *   BENCH_SIM_SIZE  F (default 256M)          BENCH_SIM_UP  U (default 20M = 20e6 B/s)
 *   BENCH_SIM_RUNS  real runs (default 3, the median is compared)
 *   BENCH_SIM_SCALE simulated sizes after the check (default "100,1000"; "" to skip)
 */
import fs from 'node:fs'
import path from 'node:path'
import { parseSize } from '../src/cli/main'
import { writeRandomFile } from '../src/cli/demo'
import { CHECKOUT, killAll } from '../src/cli/spawn'
import { runScenario } from '../src/sim/scenario'
import { parseRate } from '../streams/rateLimit'
import { run } from './swarm'

const REPO = CHECKOUT
const say = (s: string): void => { process.stdout.write(s + '\n') }
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2 }

async function main (): Promise<void> {
  const n = Math.max(1, Math.min(16, Number(process.env.BENCH_SIM_N ?? 4)))
  const F = parseSize(process.env.BENCH_SIM_SIZE ?? '256M')
  const up = parseRate(process.env.BENCH_SIM_UP ?? '20M')
  const runs = Math.max(1, Math.min(9, Number(process.env.BENCH_SIM_RUNS ?? 3)))
  const dir = path.resolve(process.env.BENCH_DIR ?? path.join(REPO, '.bench'), 'sim')
  fs.mkdirSync(path.join(dir, 'share'), { recursive: true })
  const file = path.join(dir, 'share', 'swarm.bin')
  if (!fs.existsSync(file) || fs.statSync(file).size !== F) writeRandomFile(file, F)

  say(`simulator fidelity: 1 seeder + ${n} leechers, F = ${(F / 1e6).toFixed(1)} MB, every upload capped at ${(up / 1e6).toFixed(1)} MB/s`)
  const real: number[] = []
  let tmin = 0
  for (let i = 0; i < runs; i++) {
    const x = await run(file, F, n, up, dir)
    real.push(x.secs); tmin = x.tmin
    say(`  real run ${i + 1}: ${x.secs.toFixed(2)} s (${(x.secs / x.tmin).toFixed(3)} × T_min), seeder up ${(x.seederUp / F).toFixed(3)} F`)
  }
  const sim = runScenario({ nodes: n, size: F, upload: up, seederUpload: up, seed: 1 })
  const realMed = median(real)
  const simSecs = sim.timeMs.max / 1000
  say(`  simulated:   ${simSecs.toFixed(2)} s (${sim.ratio.toFixed(3)} × T_min), seeder up ${sim.seederUploadPerF.toFixed(3)} F, wall ${(sim.wallMs / 1000).toFixed(1)} s`)
  say(`  T_min ${tmin.toFixed(2)} s; real median ${realMed.toFixed(2)} s; simulated / real = ${(simSecs / realMed).toFixed(3)} (target 0.8..1.2)`)

  const scale = (process.env.BENCH_SIM_SCALE ?? '100,1000').split(',').map(Number).filter((x) => Number.isInteger(x) && x > 0)
  if (scale.length > 0) say('\nsimulated swarms, equal upload caps (64 MiB, 20 MB/s):\nN        time max s  bound s  ratio  seeder up/F  control msgs  tracker reqs  wall s  heap/node')
  for (const N of scale) {
    const r = runScenario({ nodes: N, size: 64 * 1024 * 1024, upload: 20e6, seederUpload: 20e6, seed: 1 })
    say(`${String(N).padEnd(8)} ${(r.timeMs.max / 1000).toFixed(2).padStart(10)}  ${(r.boundMs / 1000).toFixed(2).padStart(7)}  ${r.ratio.toFixed(3)}  ${r.seederUploadPerF.toFixed(3).padStart(11)}  ${String(r.controlMessages).padStart(12)}  ${String(r.trackerRequests).padStart(12)}  ${(r.wallMs / 1000).toFixed(1).padStart(6)}  ${(r.peakHeapPerNodeBytes / 1024 / 1024).toFixed(2)} MiB`)
  }
}

main().catch((err) => { process.stderr.write(`bench-sim: ${(err as Error).stack ?? String(err)}\n`); killAll(); process.exitCode = 1 })
