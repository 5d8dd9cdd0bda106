/**
 * Benchmark: one sharing peer → one `lp2p get`, against a plain Node TCP pipe of the same file
 * measured in the same round (the idea of ../shared/anchors/tcp_node.mjs). A script, not a test.
 *
 *   BENCH_SIZE  file size, k/M/G suffixes (default 1G)     BENCH_RUNS  rounds (default 5)
 *   BENCH_DIR   work folder (default <repo>/.bench)        BENCH_WEBTORRENT  also run the WebTorrent anchor
 *   BENCH_QUIET=0  do not wait (up to 60 s) for a quiet machine before each round (the box is shared)
 *
 * "ours" is the WHOLE `lp2p get` process, spawn to exit: start-up, tracker queries, transfer and the
 * whole-file SHA-256 check. "tcp" times the client side only: connect, pipe into a file, finish.
 * The order alternates between rounds; the ratio that matters is ours/tcp within a round.
 * 1 MB = 1e6 bytes, 1 MiB = 2^20 bytes. Everything stays on 127.0.0.1.
 */
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { parseSize } from '../src/cli/main'
import { writeRandomFile } from '../src/cli/demo'
import { CHECKOUT, killAll, listening, spawnLp2p, type Spawned } from '../src/cli/spawn'
import { receive, startPipeServer, type PipeServer } from './tcpPipe'

const DEFAULT_SIZE = '1G'
const DEFAULT_RUNS = 5
const MAX_RUNS = 50
/** Every single transfer (either side) must finish within this. */
const RUN_TIMEOUT_MS = 120_000
/** The peer hashes the whole file before it listens: about 1 s per GiB here. */
const PEER_READY_TIMEOUT_MS = 120_000
const RSS_SAMPLE_MS = 50
const TARGET_RATIO = 0.8
const FILE_NAME = 'bench.bin'
const WT_TIMEOUT_MS = 600_000
const WT_DIR = '/tmp/anchors'
/** Before each round, wait (at most QUIET_MAX_WAIT_MS) until the machine is below QUIET_BUSY for a window. */
const QUIET_BUSY = 0.15
const QUIET_WINDOW_MS = 1_000
const QUIET_MAX_WAIT_MS = 60_000
/** Bound on the /proc scan that names other CPU consumers. */
const MAX_PROCS_SCANNED = 5_000

const REPO = CHECKOUT
const say = (s: string): void => { process.stdout.write(s + '\n') }
const now = (): number => Number(process.hrtime.bigint()) / 1e9
const mb = (bytes: number, secs: number): number => bytes / 1e6 / secs
const mib = (kB: number): string => (kB / 1024).toFixed(0)

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
function stats (xs: number[], digits = 0): string {
  return `${Math.min(...xs).toFixed(digits)} / ${median(xs).toFixed(digits)} / ${Math.max(...xs).toFixed(digits)}`
}

// ---------- /proc sampling (Linux) ----------

const CLK_TCK = ((): number => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

interface ProcStatus { rssKb: number, anonKb: number, hwmKb: number }

/** VmRSS, RssAnon and VmHWM of a live process, or null once it is gone. */
function readStatus (pid: number): ProcStatus | null {
  let text: string
  try { text = fs.readFileSync(`/proc/${pid}/status`, 'utf8') } catch { return null }
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN)
  return { rssKb: kb('VmRSS'), anonKb: kb('RssAnon'), hwmKb: kb('VmHWM') }
}

/** User + system CPU seconds of a live process, or null once it is gone. */
function readCpu (pid: number): number | null {
  let text: string
  try { text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8') } catch { return null }
  // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / CLK_TCK
}

/** Samples a process every RSS_SAMPLE_MS: peak VmRSS / RssAnon, last VmHWM and CPU seen. */
class Sampler {
  peakRss = 0
  peakAnon = 0
  hwm = 0
  cpu = 0
  private readonly timer: NodeJS.Timeout
  constructor (private readonly pid: number) {
    this.sample()
    this.timer = setInterval(() => this.sample(), RSS_SAMPLE_MS)
  }

  sample (): void {
    const s = readStatus(this.pid)
    // A zombie (exited, not yet reaped) still has a status file, without the Vm* lines.
    if (s !== null && Number.isFinite(s.rssKb)) {
      this.peakRss = Math.max(this.peakRss, s.rssKb)
      if (Number.isFinite(s.anonKb)) this.peakAnon = Math.max(this.peakAnon, s.anonKb)
      if (Number.isFinite(s.hwmKb)) this.hwm = s.hwmKb
    }
    const c = readCpu(this.pid)
    if (c !== null && Number.isFinite(c)) this.cpu = Math.max(this.cpu, c)
  }

  stop (): void { clearInterval(this.timer) }
}

/** Busy CPU seconds of the whole machine so far (all but idle and iowait), from /proc/stat. */
function machineBusy (): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
  return (total - f[3] - f[4]) / CLK_TCK
}

/** CPU seconds of this process so far. */
function ownCpu (): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** CPU seconds of every process now on the machine, by PID, with its command name. */
function allProcesses (): Map<number, { comm: string, cpu: number }> {
  const out = new Map<number, { comm: string, cpu: number }>()
  let pids: string[] = []
  try { pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)) } catch { return out }
  for (const d of pids.slice(0, MAX_PROCS_SCANNED)) {
    let text: string
    try { text = fs.readFileSync(`/proc/${d}/stat`, 'utf8') } catch { continue }
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
    out.set(Number(d), { comm: text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')), cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK })
  }
  return out
}

/**
 * CPU seconds burnt on the machine during a run outside the run's processes: other people's builds
 * and tests, plus kernel work no process is charged for (loopback softirq, writeback). Well above
 * the quiet-machine floor, the run's figures are noise; `top` names the biggest other consumers.
 */
class ForeignCpu {
  private readonly busy0 = machineBusy()
  private readonly own0 = ownCpu()
  private readonly procs0 = allProcesses()
  constructor (private readonly pids: number[]) {}
  /** `extra`: CPU of run-owned processes that are gone by now (the get). */
  end (extra = 0): { total: number, top: string } {
    const procs1 = allProcesses()
    const ours = new Set(this.pids)
    let pidsCpu = 0
    const others: [string, number][] = []
    for (const [pid, p] of procs1) {
      // A process that started during the run counts from 0.
      const d = p.cpu - (this.procs0.get(pid)?.cpu ?? 0)
      if (ours.has(pid)) pidsCpu += d
      else if (pid !== process.pid && d >= 0.1) others.push([`${p.comm}[${pid}]`, d])
    }
    others.sort((a, b) => b[1] - a[1])
    const total = machineBusy() - this.busy0 - (ownCpu() - this.own0) - pidsCpu - extra
    return { total, top: others.slice(0, 3).map(([n, d]) => `${n} ${d.toFixed(2)}`).join(', ') }
  }
}

/**
 * Wait until the whole machine is below QUIET_BUSY of its CPUs over one QUIET_WINDOW_MS window (our
 * idle tracker and peer included), at most QUIET_MAX_WAIT_MS. Returns the seconds waited, or null
 * when it never got quiet (the round then runs anyway, and its unattributed CPU tells).
 */
async function waitQuiet (): Promise<number | null> {
  const t0 = now()
  const cpus = os.cpus().length
  for (let i = 0; i < QUIET_MAX_WAIT_MS / QUIET_WINDOW_MS; i++) {
    const b0 = machineBusy()
    await new Promise((resolve) => setTimeout(resolve, QUIET_WINDOW_MS))
    if ((machineBusy() - b0) / (QUIET_WINDOW_MS / 1000) / cpus < QUIET_BUSY) return now() - t0
  }
  return null
}

// ---------- the source file ----------

interface Sidecar { size: number, mtimeMs: number, sha256: string }

function hashFile (file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    fs.createReadStream(file, { highWaterMark: 1 << 20 })
      .on('data', (d) => h.update(d))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject)
  })
}

/**
 * The random source file, created once and reused while its size matches. Its SHA-256 is cached
 * in a sidecar outside the shared folder (so the peer does not share it), keyed by size and mtime.
 */
async function sourceFile (shareDir: string, sidecarPath: string, size: number): Promise<{ file: string, sha256: string }> {
  const file = path.join(shareDir, FILE_NAME)
  fs.mkdirSync(shareDir, { recursive: true })
  const st = fs.statSync(file, { throwIfNoEntry: false })
  if (st !== undefined && st.size === size) {
    let side: Sidecar | null = null
    try { side = JSON.parse(fs.readFileSync(sidecarPath, 'utf8')) as Sidecar } catch { side = null }
    if (side !== null && side.size === size && side.mtimeMs === st.mtimeMs && /^[0-9a-f]{64}$/.test(side.sha256)) {
      say(`source   ${file} (${size} bytes, reused; sha256 from ${path.basename(sidecarPath)})`)
      return { file, sha256: side.sha256 }
    }
    say(`source   ${file} (${size} bytes, reused; hashing it once)`)
    const sha256 = await hashFile(file)
    fs.writeFileSync(sidecarPath, JSON.stringify({ size, mtimeMs: st.mtimeMs, sha256 }) + '\n')
    return { file, sha256 }
  }
  say(`source   ${file}: writing ${size} random bytes${st !== undefined ? ` (the old one had ${st.size})` : ''}`)
  fs.rmSync(sidecarPath, { force: true })
  const t0 = now()
  const sha256 = writeRandomFile(file, size)
  // Flush now: otherwise the kernel writes the new file back during the first rounds.
  const fd = fs.openSync(file, 'r')
  try { fs.fsyncSync(fd) } finally { fs.closeSync(fd) }
  fs.writeFileSync(sidecarPath, JSON.stringify({ size, mtimeMs: fs.statSync(file).mtimeMs, sha256 }) + '\n')
  say(`         written in ${(now() - t0).toFixed(1)} s`)
  return { file, sha256 }
}

// ---------- one run of each side ----------

interface TcpRun { secs: number, rate: number, foreign: { total: number, top: string }, clientCpu: number, serverCpu: number }

async function runTcp (server: PipeServer, dest: string, size: number, ours: number[]): Promise<TcpRun> {
  fs.rmSync(dest, { force: true })
  const foreign = new ForeignCpu([server.pid, ...ours])
  const client0 = ownCpu()
  const server0 = readCpu(server.pid) ?? NaN
  const t0 = now()
  const n = await receive(server.port, dest, RUN_TIMEOUT_MS)
  const secs = now() - t0
  const clientCpu = ownCpu() - client0
  const serverCpu = (readCpu(server.pid) ?? NaN) - server0
  const other = foreign.end()
  fs.rmSync(dest, { force: true })
  if (n !== size) throw new Error(`tcp baseline: received ${n} bytes, expected ${size}`)
  return { secs, rate: mb(size, secs), foreign: other, clientCpu, serverCpu }
}

interface OursRun {
  secs: number
  rate: number
  /** Seconds from spawn to the first arrival of each event type on stdout. */
  marks: Record<string, number>
  get: Sampler
  peerPeakRss: number
  peerPeakAnon: number
  peerCpu: number
  foreign: { total: number, top: string }
}

async function runOurs (tracker: string, outDir: string, size: number, want: string, peerPid: number, ours: number[]): Promise<OursRun> {
  // A fresh folder each run: no final file to collide with, no .part to resume from.
  fs.rmSync(outDir, { recursive: true, force: true })
  fs.mkdirSync(outDir, { recursive: true })
  const peerCpu0 = readCpu(peerPid) ?? NaN
  const peer = new Sampler(peerPid)
  const foreign = new ForeignCpu([peerPid, ...ours])
  const t0 = now()
  // By file id (= its SHA-256), not by name: the name alone may match older files a tracker lists.
  const get = spawnLp2p(['get', want, '--out', outDir, '--tracker', tracker, '--json'])
  const closed = new Promise<void>((resolve) => get.child.once('close', () => resolve()))
  const sampler = new Sampler(get.child.pid as number)
  const marks: Record<string, number> = {}
  readline.createInterface({ input: get.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const t = now() - t0
    let ev = 'line'
    try { ev = String((JSON.parse(line) as { event?: unknown }).event) } catch { /* not JSON: counted as "line" */ }
    if (marks[ev] === undefined) marks[ev] = t
    if (ev === 'progress') marks.lastProgress = t
  })
  let timer: NodeJS.Timeout | undefined
  let code: number | null
  let secs: number
  try {
    code = await Promise.race([
      get.exited,
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`lp2p get did not finish in ${RUN_TIMEOUT_MS} ms`)), RUN_TIMEOUT_MS) }),
    ])
    secs = now() - t0
  } catch (err) {
    await get.stop()
    throw err
  } finally {
    clearTimeout(timer)
    sampler.stop()
    peer.stop()
  }
  const peerCpu = (readCpu(peerPid) ?? NaN) - peerCpu0
  const other = foreign.end(sampler.cpu)
  // Every stdout line is in once stdio has closed (bounded: the process is gone already).
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5_000))])
  const done = get.events.find((e) => e.event === 'done')
  if (code !== 0 || done === undefined) {
    const err = get.events.find((e) => e.event === 'error')
    throw new Error(`lp2p get failed (exit ${String(code)}): ${String(err?.message ?? get.stderr.slice(-3).join(' | '))}`)
  }
  if (done.sha256 !== want) throw new Error(`lp2p get: sha256 ${String(done.sha256)} != source ${want}`)
  if (done.bytes !== size) throw new Error(`lp2p get: ${String(done.bytes)} bytes != ${size}`)
  const st = fs.statSync(String(done.path), { throwIfNoEntry: false })
  if (st?.size !== size) throw new Error(`lp2p get: ${String(done.path)} has ${String(st?.size)} bytes, expected ${size}`)
  fs.rmSync(outDir, { recursive: true, force: true })
  return { secs, rate: mb(size, secs), marks, get: sampler, peerPeakRss: peer.peakRss, peerPeakAnon: peer.peakAnon, peerCpu, foreign: other }
}

function unattributed (f: { total: number, top: string }): string {
  return `${f.total.toFixed(2)} s${f.top === '' ? '' : ` (others: ${f.top})`}`
}

function describeOurs (r: OursRun, size: number): string {
  const m = r.marks
  const f = (x: number | undefined): string => (x === undefined ? '?' : x.toFixed(3))
  const d = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? '?' : (b - a).toFixed(3))
  const xfer = m.peers !== undefined && m.done !== undefined ? ` (${mb(size, m.done - m.peers).toFixed(0)} MB/s)` : ''
  return `    get: RSS peak ${mib(r.get.peakRss)} MiB (RssAnon ${mib(r.get.peakAnon)}, VmHWM ${mib(r.get.hwm)}), CPU ≥${r.get.cpu.toFixed(2)} s; ` +
    `peer: RSS peak ${mib(r.peerPeakRss)} MiB (RssAnon ${mib(r.peerPeakAnon)}), CPU ${r.peerCpu.toFixed(2)} s\n` +
    `    phases (s): spawn→start ${f(m.start)}, start→peers ${d(m.start, m.peers)}, peers→done ${d(m.peers, m.done)}${xfer}` +
    ` [last progress at ${f(m.lastProgress)}], done→exit ${d(m.done, r.secs)}; unattributed CPU ${unattributed(r.foreign)}`
}

// ---------- WebTorrent anchor (optional, no installing) ----------

async function webTorrent (file: string, runs: number): Promise<void> {
  if (process.env.BENCH_WEBTORRENT === undefined) {
    say('note: set BENCH_WEBTORRENT=1 (with /tmp/anchors set up by ../shared/anchors/setup.sh) for WebTorrent figures, or run ../shared/anchors/wt_swarm.mjs')
    return
  }
  const script = path.join(WT_DIR, 'wt_swarm.mjs')
  if (!fs.existsSync(script) || !fs.existsSync(path.join(WT_DIR, 'node_modules', 'webtorrent'))) {
    say(`note: BENCH_WEBTORRENT is set but ${WT_DIR} has no wt_swarm.mjs + node_modules/webtorrent (see ../shared/anchors/setup.sh): skipped`)
    return
  }
  say(`\nWebTorrent 1 seeder + 1 leecher (${script}, ${runs} run(s)):`)
  const child = spawn(process.execPath, [script, '--leechers=1', `--runs=${runs}`, `--file=${file}`], { cwd: WT_DIR, stdio: ['ignore', 'inherit', 'inherit'] })
  const t = setTimeout(() => { say('WebTorrent anchor: timed out, killed'); child.kill('SIGKILL') }, WT_TIMEOUT_MS)
  try { await new Promise<void>((resolve) => child.once('exit', () => resolve())) } finally { clearTimeout(t) }
}

// ---------- main ----------

async function main (): Promise<number> {
  const size = parseSize(process.env.BENCH_SIZE ?? DEFAULT_SIZE)
  const runs = Number(process.env.BENCH_RUNS ?? DEFAULT_RUNS)
  const quiet = process.env.BENCH_QUIET !== '0'
  if (size < 1) throw new Error('BENCH_SIZE must be at least 1 byte')
  if (!Number.isInteger(runs) || runs < 1 || runs > MAX_RUNS) throw new Error(`BENCH_RUNS must be 1..${MAX_RUNS}`)
  const workDir = path.resolve(process.env.BENCH_DIR ?? path.join(REPO, '.bench'))
  const shareDir = path.join(workDir, 'share')
  const outDir = path.join(workDir, 'out')
  const tcpDest = path.join(workDir, 'tcp-recv.bin')

  // A hard bound on the whole script, whatever hangs.
  const watchdog = setTimeout(() => {
    process.stderr.write('bench: overall time limit reached, stopping everything\n')
    killAll(); process.exit(3)
  }, PEER_READY_TIMEOUT_MS + runs * (2 * (RUN_TIMEOUT_MS + 10_000) + QUIET_MAX_WAIT_MS + 5_000) + WT_TIMEOUT_MS + Math.ceil(size / 50e6) * 1000)
  watchdog.unref()

  say(`bench    ${size} bytes (${(size / 1e6).toFixed(1)} MB), ${runs} round(s), node ${process.version}, ${os.cpus().length} CPU(s), load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`)
  fs.mkdirSync(workDir, { recursive: true })
  const { file, sha256 } = await sourceFile(shareDir, path.join(workDir, `${FILE_NAME}.sha256`), size)
  say(`sha256   ${sha256}`)

  const procs: Spawned[] = []
  let server: PipeServer | null = null
  const onSignal = (sig: NodeJS.Signals): void => {
    killAll()
    if (server !== null) { try { process.kill(server.pid, 'SIGKILL') } catch { /* already gone */ } }
    process.exit(sig === 'SIGINT' ? 130 : 143)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    // --memory: a throw-away registry, nothing written to (or read from) the user's data folder.
    const tracker = spawnLp2p(['tracker', '--port', '0', '--memory', '--json'])
    procs.push(tracker)
    const trackerAddr = await listening(tracker)
    const t0 = now()
    const peer = spawnLp2p(['peer', '--share', shareDir, '--tracker', trackerAddr, '--json'])
    procs.push(peer)
    const peerAddr = await listening(peer, PEER_READY_TIMEOUT_MS)
    say(`tracker  udp ${trackerAddr} (pid ${String(tracker.child.pid)}); peer tcp ${peerAddr} (pid ${String(peer.child.pid)}), listening ${(now() - t0).toFixed(2)} s after spawn`)
    const shared = peer.events.find((e) => e.event === 'shared' && e.name === FILE_NAME)
    if (shared?.fileId !== sha256) throw new Error(`peer shares ${FILE_NAME} as ${String(shared?.fileId)}, expected ${sha256}`)
    server = await startPipeServer(file)
    say(`tcp pipe server pid ${server.pid} on 127.0.0.1:${server.port}\n`)

    const tcp: TcpRun[] = []
    const ours: OursRun[] = []
    const ratios: number[] = []
    for (let i = 0; i < runs; i++) {
      const tag = `round ${i + 1}/${runs}`
      let a: TcpRun | undefined
      let b: OursRun | undefined
      if (quiet) {
        const waited = await waitQuiet()
        if (waited === null) say(`${tag}  note: the machine stayed above ${QUIET_BUSY * 100}% busy for ${QUIET_MAX_WAIT_MS / 1000} s; running anyway`)
        else if (waited > 2 * QUIET_WINDOW_MS / 1000) say(`${tag}  waited ${waited.toFixed(0)} s for a quiet machine`)
      }
      for (const side of i % 2 === 0 ? ['tcp', 'lp2p'] : ['lp2p', 'tcp']) {
        if (side === 'tcp') {
          a = await runTcp(server, tcpDest, size, [tracker.child.pid as number, peer.child.pid as number])
          say(`${tag}  tcp   ${a.secs.toFixed(3)} s  ${a.rate.toFixed(0).padStart(5)} MB/s  client CPU ${a.clientCpu.toFixed(2)} s, server CPU ${a.serverCpu.toFixed(2)} s, unattributed CPU ${unattributed(a.foreign)}`)
        } else {
          b = await runOurs(trackerAddr, outDir, size, sha256, peer.child.pid as number, [tracker.child.pid as number, server.pid])
          say(`${tag}  lp2p  ${b.secs.toFixed(3)} s  ${b.rate.toFixed(0).padStart(5)} MB/s  sha256 OK\n${describeOurs(b, size)}`)
        }
      }
      if (a === undefined || b === undefined) throw new Error('unreachable: a round ran only one side')
      tcp.push(a); ours.push(b); ratios.push(b.rate / a.rate)
      say(`${tag}  ratio lp2p/tcp ${(b.rate / a.rate).toFixed(3)}`)
    }

    const ratio = median(ratios)
    say('')
    say(`summary over ${runs} round(s), ${size} bytes, MB/s min / median / max:`)
    say(`  tcp baseline (client side, node net → file): ${stats(tcp.map((r) => r.rate))}`)
    say(`  lp2p get (whole process, verified):          ${stats(ours.map((r) => r.rate))}`)
    say(`  ratio lp2p/tcp per round:                    ${stats(ratios, 3)}  (median ${ratio.toFixed(3)})`)
    say(`  get peak RSS (VmRSS sampled every ${RSS_SAMPLE_MS} ms): ${stats(ours.map((r) => r.get.peakRss / 1024))} MiB; RssAnon ${stats(ours.map((r) => r.get.peakAnon / 1024))} MiB`)
    say(`  unattributed CPU-s during runs (other processes, kernel softirq/writeback): tcp ${stats(tcp.map((r) => r.foreign.total), 2)}, lp2p ${stats(ours.map((r) => r.foreign.total), 2)} (high = noisy machine)`)
    say(`  target ratio >= ${TARGET_RATIO}: ${ratio >= TARGET_RATIO ? 'MET' : 'NOT MET'} (median ${ratio.toFixed(3)})`)
    await webTorrent(file, Math.min(runs, 3))
    return 0
  } finally {
    if (server !== null) await server.stop()
    await Promise.all(procs.map((p) => p.stop()))
    killAll()
    fs.rmSync(outDir, { recursive: true, force: true })
    fs.rmSync(tcpDest, { force: true })
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  process.stderr.write(`bench FAILED: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exitCode = 1
})
