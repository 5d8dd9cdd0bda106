import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import net from 'node:net'
import path from 'node:path'
import { Command, Option } from 'commander'
import { firstValueFrom, lastValueFrom, of, ReplaySubject, takeUntil, tap, type Observable } from 'rxjs'
import type { TrackerClient } from '../net/trackerClient'
import { Lp2pError, NotFoundError, UsageError } from '../errors'
import { BUSY_QUEUE_MS, MAX_GET_NAMES, NO_PROGRESS_MS } from '../limits'
import { log, LOG_FORMATS, setLogFormat, setLogLevel, type LogFormat } from '../log'
import { formatEndpoint, parseEndpoint } from '../net/address'
import { Lp2pNode } from '../peer/node'
import type { LeechEvent } from '../peer/leech'
import { ago, bytes, parseDuration, table } from './format'
import { errorCode, EXIT, exitCode } from './exit'
import { progress, ServingView } from './progress'
import { parseRate } from '../../streams/rateLimit'
import { demo } from './demo'
import { CHECKOUT } from './spawn'
import { printable, terminalSafe } from '../text'
import { addSimulate } from './simulate'

const DEFAULT_TRACKER = '127.0.0.1:7070'
const DEFAULT_DATA = path.join(process.env.XDG_DATA_HOME ?? path.join(os.homedir(), '.local', 'share'), 'lp2p', 'tracker')

const out = (s: string): void => { process.stdout.write(s) }
const json = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n') }

/** A HOST:PORT value checked as it is parsed (so a bad LP2P_* value names its variable), kept as given. */
function endpointArg (flag: string, listen = false): (v: string) => string {
  return (v) => { parseEndpoint(v, flag, listen); return v }
}
function ipArg (v: string): string {
  if (net.isIP(v) === 0) throw new UsageError(`--host "${v}" is not an IP address`)
  return v
}
/** A node's --host: by default the address this machine reaches the tracker from. */
function nodeHostOption (what: string): Option {
  return new Option('--host <ip>', `${what} (default: the address this machine reaches the tracker from: 127.0.0.1 for a tracker on loopback, this machine's LAN address for one on the LAN)`).argParser(ipArg).env('LP2P_HOST')
}
function trackerOption (): Option {
  return new Option('-t, --tracker <host:port>', 'tracker address (UDP)').default(DEFAULT_TRACKER).argParser(endpointArg('--tracker')).env('LP2P_TRACKER')
}
function jsonOption (what: string): Option {
  return new Option('--json', what).env('LP2P_JSON')
}
function rate (v: string): number {
  try { return parseRate(v) } catch (err) { throw new UsageError((err as Error).message) }
}
function uploadLimit (): Option {
  return new Option('--upload-limit <rate>', `cap on bytes/s sent to peers (k/M/G = 10^3/10^6/10^9, Ki/Mi/Gi = powers of 1024; 0: none); under a cap, the rarest queued piece leaves first and a request past ${BUSY_QUEUE_MS} ms of queue is declined BUSY (the asker tries another holder)`).default(Infinity, 'none').argParser(rate).env('LP2P_UPLOAD_LIMIT')
}
/** A `get` argument that names a folder of the tracker's listing (`train/`): every file in it. */
const isFolder = (query: string): boolean => query.endsWith('/')

/** A folder argument: an empty one (an exported but empty LP2P_SHARE) is refused, not taken as the current folder (a peer started in ~ shared all of it). */
function folderArg (flag: string): (v: string) => string {
  return (v) => {
    if (v.trim() === '') throw new UsageError(`${flag} is empty: name a folder (. for this one)`)
    return v
  }
}

function port (v: string): number {
  // decimal digits only: Number() would take "" as 0 (any port), "0x1F90" and "1e3"
  const n = /^\s*\d{1,5}\s*$/.test(v) ? Number(v) : NaN
  if (!(n <= 65535)) throw new UsageError(`port "${v}" is not 0..65535`)
  return n
}

/** Environment values that turn a switch (`--json`, `--seed`, …) on or off. */
const ENV_TRUE = ['1', 'true', 'yes', 'on']
const ENV_FALSE = ['0', 'false', 'no', 'off', '']
/** How often `peer` reads its counters for its status display. */
const SERVING_TICK_MS = 1000

/** `uploadLimit` → `LP2P_UPLOAD_LIMIT`. */
export function envName (attribute: string): string {
  return 'LP2P_' + attribute.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()
}

/** A switch's environment value: on, off, or a usage error naming the variable. */
export function envSwitch (name: string, value: string | undefined): boolean {
  const v = (value ?? '').trim().toLowerCase()
  if (ENV_TRUE.includes(v)) return true
  if (ENV_FALSE.includes(v)) return false
  throw new UsageError(`${name}=${JSON.stringify(value)}: expected ${ENV_TRUE.join('/')} (on) or ${ENV_FALSE.filter((x) => x !== '').join('/')}/empty (off)`)
}

/**
 * Every option of every command can also come from the environment: one that names no variable
 * gets `LP2P_<NAME>`, so a flag added later cannot miss one. Commander turns a switch on whenever
 * its variable is set at all; here its value decides, so `LP2P_JSON=0` means off.
 */
class Lp2pCommand extends Command {
  override createCommand (name?: string): Command { return new Lp2pCommand(name) }

  override addOption (option: Option): this {
    if (option.envVar === undefined) option.env(envName(option.attributeName()))
    super.addOption(option)
    const variable = option.envVar as string
    // a negated switch (--no-watch) reads its variable the positive way: LP2P_WATCH=0 turns it off
    // (a switch: no value; commander's isBoolean() leaves the negated ones out)
    // (a plain switch turned off by its variable is as good as not given: it conflicts with nothing)
    if (!option.required && !option.optional) {
      this.on(`optionEnv:${option.name()}`, () => {
        const on = envSwitch(variable, process.env[variable])
        if (on || option.negate) this.setOptionValueWithSource(option.attributeName(), on, 'env')
        else this.setOptionValueWithSource(option.attributeName(), undefined, 'default')
      })
    }
    // a bad value from the environment names its variable (the user may not know it is set)
    const parse = option.parseArg
    if (parse !== undefined) {
      let fromEnv = false
      // (before commander's own listener, which parses; its typings leave out EventEmitter)
      ;(this as unknown as EventEmitter).prependListener(`optionEnv:${option.name()}`, () => { fromEnv = true })
      option.parseArg = <T>(value: string, previous: T): T => {
        const env = fromEnv
        fromEnv = false
        try { return parse(value, previous) } catch (err) {
          if (env && err instanceof UsageError) throw new UsageError(`${variable}: ${err.message}`)
          throw err
        }
      }
    }
    return this
  }
}

/**
 * A hook refusing two options given together, where a flag on the command line beats the other's
 * variable (`--memory` with LP2P_DATA set: the flag wins) as it does for one option; both flags,
 * or both variables, are a usage error. (Commander's own conflicts() counts variables as flags.)
 */
export function exclusive (a: string, b: string): (cmd: Command) => void {
  return (cmd) => {
    const given = (k: string): 'cli' | 'env' | undefined => {
      const src = cmd.getOptionValueSource(k)
      return cmd.getOptionValue(k) !== undefined && (src === 'cli' || src === 'env') ? src as 'cli' | 'env' : undefined
    }
    const sa = given(a)
    const sb = given(b)
    if (sa === undefined || sb === undefined) return
    const opt = (k: string): Option => cmd.options.find((o) => o.attributeName() === k) as Option
    if (sa !== sb) {
      // the variable's option goes back to its default, as if it had not been set
      const loser = opt(sa === 'env' ? a : b)
      cmd.setOptionValueWithSource(loser.attributeName(), loser.defaultValue, 'default')
      return
    }
    const say = (o: Option): string => sa === 'cli' ? o.long as string : o.envVar as string
    throw new UsageError(`${say(opt(a))} and ${say(opt(b))} cannot be used together`)
  }
}

const ENV_HELP = `
Environment:
  Every option can also be set by the LP2P_* variable shown beside it (env: …);
  a flag on the command line wins. Switches (options that take no value, like
  --json) are on for ${ENV_TRUE.join(', ')}, off for ${ENV_FALSE.filter((x) => x !== '').join(', ')} or empty;
  any other value is a usage error.`

/** One question to the tracker from a node that serves nothing (ls, status). */
async function askTracker<T> (tracker: string, ask: (c: TrackerClient) => Observable<T>): Promise<T> {
  const node = new Lp2pNode({ tracker: parseEndpoint(tracker, '--tracker'), serve: false })
  try {
    await node.start()
    return await firstValueFrom(ask(node.trackerClient))
  } finally { await node.close() }
}

/**
 * What ends a running command: SIGINT, SIGTERM, or a closed stdout (see `watchStdout`), told as
 * SIGPIPE. Exit statuses as a shell reports a process killed by each (128 + its number).
 */
const STOP_STATUS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143, SIGPIPE: 141 }
/** A write to stdout that failed other than by a reader gone (a full disk, an I/O error). */
let stdoutFailure: Error | undefined
/** A stop's status: the signal's, but 1 for a stdout that failed (no signal of any kind). */
function stopStatus (sig: NodeJS.Signals): number {
  return sig === 'SIGPIPE' && stdoutFailure !== undefined ? 1 : STOP_STATUS[sig] ?? 1
}
/** A stop's cause, for the line that says so. */
function stopCause (sig: NodeJS.Signals): string {
  if (sig !== 'SIGPIPE') return sig
  return stdoutFailure === undefined ? 'SIGPIPE (stdout closed)' : 'a failed write to stdout'
}
// (not a process listener for SIGPIPE: adding and removing one would leave the real signal at its
// default, and the next write to the closed pipe would kill the process)
const stdoutClosed = new EventEmitter()

function onStop (f: (sig: NodeJS.Signals) => void): () => void {
  process.on('SIGINT', f); process.on('SIGTERM', f); stdoutClosed.on('closed', f)
  return () => { process.off('SIGINT', f); process.off('SIGTERM', f); stdoutClosed.off('closed', f) }
}

/**
 * stdout's reader went away (a pipe to `head`): no crash with a stack trace on the write that
 * failed. Node ignores the real SIGPIPE; this tells `onStop` once, as SIGPIPE: a running command
 * stops as that signal would stop it (status 141); a short one (`ls`, `--help`) just ends. Later
 * writes to the closed pipe fail quietly. Any other failed write (`> /dev/full`, a full disk)
 * stops a running command the same way, said in one line on stderr, with status 1, as does a
 * short one that wrote nothing the user can read.
 */
export function watchStdout (stdout: NodeJS.WriteStream = process.stdout, stderr: NodeJS.WritableStream = process.stderr): void {
  let told = false
  stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (told) return
    told = true
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') {
      stdoutFailure = err
      stderr.write(`lp2p: cannot write to stdout: ${err.message}\n`)
      process.exitCode = 1 // (a short command may have ended already)
    }
    stdoutClosed.emit('closed', 'SIGPIPE')
  })
}

/**
 * The tracker's modules (SQLite, the dashboard, Prometheus metrics: about 150 modules), loaded
 * by the `tracker` command only: `get`, `peer`, `ls` start that much sooner.
 */
function trackerModules (): typeof import('../tracker/server') & typeof import('../tracker/sqliteStore') & typeof import('../tracker/http') & typeof import('../tracker/metrics') {
  return { ...require('../tracker/server'), ...require('../tracker/sqliteStore'), ...require('../tracker/http'), ...require('../tracker/metrics') }
}

/** Run until SIGINT/SIGTERM (a server's normal end: status 0) or a closed stdout (141), then close. */
function untilSignal (close: () => Promise<void> | void): Promise<void> {
  return new Promise((resolve) => {
    const off = onStop((sig) => {
      off()
      if (sig === 'SIGPIPE') process.exitCode = stopStatus(sig)
      Promise.resolve(close()).finally(resolve)
    })
  })
}

/** This checkout's version (its package.json). */
function version (): string {
  return (JSON.parse(fs.readFileSync(path.join(CHECKOUT, 'package.json'), 'utf8')) as { version: string }).version
}

/** The CLI; `argv`: the command line it parses (a simulation re-runs it with bigger heap flags). */
export function program (argv: readonly string[] = process.argv): Command {
  const p = new Lp2pCommand('lp2p')
    .description('local-p2p: spread big files across the machines of a local network, verified, from many peers at once')
    .version(version(), '-V, --version', 'print the version of local-p2p')
    .addOption(new Option('--log-level <level>', 'pino log level for the logs on stderr').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('warn').env('LP2P_LOG_LEVEL'))
    .addOption(new Option('--log-format <format>', 'logs on stderr as JSON lines or pretty text (auto: pretty on a terminal)').choices(LOG_FORMATS).default('auto').env('LP2P_LOG_FORMAT'))
    // a usage error is one line, as lp2p's own are (`lp2p: …`), and a pointer to the help
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str.replace(/^error: /, 'lp2p: ')) })
    .addHelpText('afterAll', ENV_HELP)
    .hook('preAction', (cmd) => {
      const o = cmd.opts<{ logLevel: string, logFormat: LogFormat }>()
      setLogLevel(o.logLevel)
      setLogFormat(o.logFormat)
    })

  p.command('tracker')
    .description('run the tracker: a UDP service where nodes publish files, heartbeat and find each other')
    .addOption(new Option('--host <ip>', 'address to bind').default('127.0.0.1').argParser(ipArg).env('LP2P_HOST'))
    .addOption(new Option('--port <port>', 'UDP port (0: any free port)').default(7070).argParser(port).env('LP2P_PORT'))
    .addOption(new Option('--data <dir>', 'folder for the file registry (SQLite): files published stay listed across restarts').default(DEFAULT_DATA).env('LP2P_DATA'))
    .addOption(new Option('--memory', 'keep the file registry in memory only: nothing survives a restart (not with --data)'))
    .addOption(new Option('--http <host:port>', 'also serve a read-only dashboard (/), a JSON snapshot (/api/state), live updates (/events) and Prometheus metrics (/metrics) over HTTP at this address (port 0: any free port); off by default').argParser(endpointArg('--http', true)).env('LP2P_HTTP'))
    .addOption(jsonOption('print the listening event as JSON'))
    .hook('preAction', exclusive('memory', 'data'))
    // (after exclusive: with --memory, an empty LP2P_DATA is not read at all)
    .hook('preAction', (cmd) => {
      const o = cmd.opts<{ data: string, memory?: boolean }>()
      if (o.memory !== true) folderArg(cmd.getOptionValueSource('data') === 'env' ? 'LP2P_DATA: --data' : '--data')(o.data)
    })
    .action(async (o: { host: string, port: number, data: string, memory?: boolean, http?: string, json?: boolean }) => {
      const httpAt = o.http === undefined ? undefined : parseEndpoint(o.http, '--http', true)
      const { TrackerServer, SqliteFileStore, DashboardHttp, TrackerMetrics } = trackerModules()
      // (a tracker that cannot start leaves no data folder it made behind)
      const dataDir = o.memory === true ? null : path.resolve(o.data)
      const made = dataDir !== null && !fs.existsSync(dataDir)
      const t = new TrackerServer({ host: o.host, port: o.port, files: dataDir === null ? undefined : new SqliteFileStore(dataDir) })
      const failed = (err: unknown): never => {
        t.close()
        if (made && dataDir !== null) fs.rmSync(dataDir, { recursive: true, force: true })
        throw err
      }
      const metrics = new TrackerMetrics(t.registry, { processMetrics: true })
      t.observer = metrics
      const addr = await t.start().catch(failed)
      const dash = httpAt === undefined ? undefined : new DashboardHttp({ host: httpAt.address, port: httpAt.port, registry: t.registry, metrics })
      let httpAddr: string | undefined
      try {
        if (dash !== undefined) httpAddr = formatEndpoint(await dash.start())
      } catch (err) {
        // (the address was well formed: it could not be bound, as a taken --port is not a usage error either)
        failed(new Error(`--http ${o.http ?? ''}: ${(err as Error).message}`))
      }
      if (o.json === true) json({ event: 'listening', role: 'tracker', address: formatEndpoint(addr), ...(httpAddr === undefined ? {} : { http: httpAddr }) })
      else out(`tracker listening on udp ${formatEndpoint(addr)}${httpAddr === undefined ? '' : `, dashboard on http://${httpAddr}/`}\n`)
      await untilSignal(async () => { await dash?.close(); t.close() })
    })

  p.command('peer')
    .description('share the files of a folder: hash, publish to the tracker, serve pieces to leechers')
    .addOption(new Option('-s, --share <dir>', 'folder whose regular files are shared (recursively)').makeOptionMandatory().argParser(folderArg('--share')).env('LP2P_SHARE'))
    .addOption(trackerOption())
    .addOption(nodeHostOption('address to bind and to be reached at'))
    .addOption(new Option('--port <port>', 'TCP port for peers (0: any free port)').default(0).argParser(port).env('LP2P_PORT'))
    .addOption(uploadLimit())
    .addOption(new Option('--no-watch', 'share the folder as it is at start: files added, changed or removed later are not noticed until a restart (by default they are published or withdrawn within seconds)'))
    .addOption(jsonOption('print NDJSON events: shared (one per file, and for files published later), withdrawn, renamed, listening (with files not published yet: unpublished), then serving every 2 s (files, connections, uploaded bytes, rate)'))
    .action(async (o: { share: string, tracker: string, host: string, port: number, uploadLimit: number, watch: boolean, json?: boolean }) => {
      const node = new Lp2pNode({ tracker: parseEndpoint(o.tracker, '--tracker'), host: o.host, port: o.port, share: path.resolve(o.share), uploadLimit: o.uploadLimit, watch: o.watch })
      try {
        await node.start()
      } catch (err) {
        // (what it bound before failing, a UDP socket or a listener, would keep the process alive)
        await node.close()
        throw err
      }
      const addr = node.address as { address: string, port: number }
      const files = node.publishedFiles
      // (files the tracker did not take yet are published by the heartbeats, each told by a `shared` line then)
      const waiting = node.sharedFiles.length - files.length
      if (o.json === true) {
        for (const f of files) json({ event: 'shared', name: f.name, fileId: f.hash, size: f.size, blockSize: f.blockSize, pieces: f.pieces })
        json({ event: 'listening', role: 'peer', nodeId: node.nodeId, address: formatEndpoint(addr), files: files.length, unpublished: waiting })
      } else {
        if (files.length > 0) out(table(['NAME', 'SIZE', 'PIECES', 'FILE ID'], files.map((f) => [f.name, bytes(f.size), `${f.pieces} × ${bytes(f.blockSize)}`, f.hash.slice(0, 16)])))
        out(`peer ${node.nodeId.slice(0, 8)} sharing ${files.length} file(s)${waiting > 0 ? ` (${waiting} more once the tracker answers)` : ''}, listening on tcp ${formatEndpoint(addr)}\n`)
      }
      if (waiting > 0) log.warn({ published: files.length, local: node.sharedFiles.length }, 'some files could not be published (the tracker is down, or refused them: see the warnings above); retrying with heartbeats')
      const view = new ServingView(o.json === true ? 'json' : process.stdout.isTTY ? 'tty' : 'lines', process.stdout)
      // files added to or removed from the folder later (watching)
      const changes = node.shareChanges$.subscribe((e) => {
        if (o.json === true) { json(e); return }
        view.note(e.event === 'shared'
          ? `shared ${printable(e.name)} (${bytes(e.size)}, ${e.fileId.slice(0, 16)})`
          : e.event === 'renamed' ? `renamed ${printable(e.from)} → ${printable(e.name)} (${e.fileId.slice(0, 16)})` : `withdrawn ${printable(e.name)}: ${printable(e.reason)}`)
      })
      const tick = setInterval(() => { view.tick({ files: node.publishedFiles.length, connections: node.peerConnections, uploaded: node.uploaded }) }, SERVING_TICK_MS)
      await untilSignal(() => {
        changes.unsubscribe()
        clearInterval(tick)
        view.stop()
        return node.close()
      })
    })

  p.command('get')
    .description(`download files by name, file-id prefix or folder, one after the other; exits 0 only when every SHA-256 matches (with several, a file that fails is said on stderr and the next is fetched; the status is the first failure's)`)
    .argument('<name-or-id...>', `exact file name (a file in a sharer's subfolder is named by its path there: train/0001.png, written to OUT/train/0001.png), a prefix of its hex file id, or a folder ending in / (train/: every file in it and its subfolders) (at most ${MAX_GET_NAMES}; the same one twice is fetched once)`, (v: string, names: string[] | undefined) => {
      if (v.trim() === '') throw new UsageError('the file name or id is empty')
      const all = names ?? []
      if (all.includes(v)) return all
      if (all.length >= MAX_GET_NAMES) throw new UsageError(`at most ${MAX_GET_NAMES} names in one get`)
      return [...all, v]
    })
    .addOption(new Option('-o, --out <dir>', 'folder to write into, created if missing (NAME.part while downloading, NAME when verified)').default('.').argParser(folderArg('--out')).env('LP2P_OUT'))
    .addOption(trackerOption())
    .addOption(nodeHostOption('address to bind and to serve pieces from'))
    .addOption(new Option('--port <port>', 'TCP port to serve verified pieces to other leechers on (0: any free port)').default(0).argParser(port).env('LP2P_PORT'))
    .addOption(uploadLimit())
    .addOption(new Option('--download-limit <rate>', 'cap on bytes/s fetched from peers (same units as --upload-limit)').default(Infinity, 'none').argParser(rate).env('LP2P_DOWNLOAD_LIMIT'))
    .addOption(new Option('--stall-timeout <time>', 'give up (exit 6, the .part kept for a resume) when no piece arrived for this long while peers hold the rest: they decline every request (busy, or broken); time spent waiting for --download-limit does not count (30, 30s, 2m; 0: never)').default(NO_PROGRESS_MS, `${NO_PROGRESS_MS / 1000}s`).argParser(parseDuration).env('LP2P_STALL_TIMEOUT'))
    .addOption(new Option('--seed', 'after the files are verified, keep serving them until interrupted (SIGINT/SIGTERM)').env('LP2P_SEED'))
    .addOption(jsonOption('print NDJSON events (start, peers, progress at most 4 a second, piece-failed, peer-dropped, done, error; with --seed then seeding) instead of a progress bar'))
    .action(async (queries: string[], o: { out: string, tracker: string, host: string, port: number, uploadLimit: number, downloadLimit: number, stallTimeout: number, seed?: boolean, json?: boolean }) => {
      const node = new Lp2pNode({ tracker: parseEndpoint(o.tracker, '--tracker'), host: o.host, port: o.port, uploadLimit: o.uploadLimit, downloadLimit: o.downloadLimit })
      // a signal stops the download (the .part file stays for a resume), the display and the names
      // not fetched yet, then exits 130/143
      const signalled = new ReplaySubject<NodeJS.Signals>(1)
      const offSignal = onStop((sig) => { offSignal(); signalled.next(sig) })
      const seeded: string[] = []
      let failed: unknown = null
      try {
        await node.start()
        // several names (or a folder: `train/`, every file in it): resolved in one listing of the
        // tracker's files, not one each; fetched one after the other
        const several = queries.length > 1 || queries.some(isFolder)
        const listing = several ? node.sharedListing() : undefined
        // (a name a folder was expanded to is a name, never expanded again: one published as
        // `train/evil/` was taken for a folder holding itself, and the get spun for good)
        const todo = queries.map((query) => ({ query, named: false }))
        for (let next = todo.shift(); next !== undefined; next = todo.shift()) {
          const query = next.query
          const view = progress(o.json === true ? 'json' : process.stdout.isTTY ? 'tty' : 'lines', process.stdout, { query })
          let last: LeechEvent | null
          let fetched = false // (a piece of it is on disk: an interruption leaves something to resume)
          try {
            if (isFolder(query) && !next.named) {
              const { names, unheld } = await lastValueFrom(listing?.namesIn(query) ?? of({ names: [], unheld: 0 }))
              const none = unheld === 0 ? undefined : `${unheld} listed there ${unheld === 1 ? 'is' : 'are'} held by no live node`
              if (names.length === 0) throw new NotFoundError(query, none)
              if (none !== undefined) process.stderr.write(`lp2p: ${printable(query)}: ${none} (old versions, or deleted at their sharer): not fetched\n`)
              todo.unshift(...names.map((n) => ({ query: n, named: true })))
              continue
            }
            last = await lastValueFrom(node.leech(query, path.resolve(o.out), { noProgressMs: o.stallTimeout, listing }).pipe(
              tap((e) => { if (e.event === 'piece' || (e.event === 'start' && e.present > 0)) fetched = true }),
              view.operator(), takeUntil(signalled)), { defaultValue: null })
          } catch (err) {
            view.fail(err)
            if (!several) throw err
            // (one of several: said, and the next is fetched; the status is the first failure's)
            process.stderr.write(`lp2p: ${printable(query)}: ${terminalSafe((err as Error).message)}\n`)
            failed ??= err
            // (a tracker that does not answer would cost every name its tries, 8 s each)
            if (errorCode(err) === 'ERR_TRACKER_UNREACHABLE') {
              const left = todo.map((t) => t.query)
              if (left.length > 0) process.stderr.write(`lp2p: not fetched (the tracker does not answer): ${left.map(printable).join(' ')}\n`)
              break
            }
            continue
          }
          if (last?.event !== 'done') {
            offSignal()
            const sig = await firstValueFrom(signalled)
            const why = stopCause(sig)
            // (the pieces verified so far stay in the .part; with none, there is no .part)
            const said = `interrupted by ${why}; ${fetched ? 'the same get resumes from the pieces verified so far' : 'nothing was fetched yet'}`
            view.fail(new Lp2pError('ERR_INTERRUPTED', said))
            process.stderr.write(`lp2p: ${said}\n`)
            process.exitCode = stopStatus(sig)
            return
          }
          view.finish(last)
          if (!seeded.includes(last.fileId)) seeded.push(last.fileId)
        }
        offSignal()
        if (failed !== null) process.exitCode = exitCode(failed)
        if (o.seed === true && seeded.length > 0) {
          const at = formatEndpoint(node.address as { address: string, port: number })
          if (o.json === true) for (const fileId of seeded) json({ event: 'seeding', fileId, address: at })
          else out(`seeding${seeded.length > 1 ? ` ${seeded.length} files` : ''} on tcp ${at} until interrupted\n`)
          await untilSignal(() => {})
        }
      } finally {
        offSignal()
        await node.close()
      }
    })

  p.command('ls')
    .description('list the files the tracker knows, by name, with how many live nodes hold each (0: an old version nobody shares any more)')
    .argument('[folder]', 'only the files in this folder and its subfolders (train/: a file in a sharer\'s subfolder is named by its path there)')
    .addOption(trackerOption())
    .addOption(jsonOption('print a JSON array of {name, fileId, size, blockSize, pieces, holders}'))
    .action(async (folder: string | undefined, o: { tracker: string, json?: boolean }) => {
      const under = folder === undefined || folder === '' || isFolder(folder) ? folder ?? '' : `${folder}/`
      const files = (await askTracker(o.tracker, (c) => c.files())).filter((f) => f.name.startsWith(under))
        .sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0)
      if (o.json === true) json(files.map((f) => ({ name: f.name, fileId: f.hash, size: f.size, blockSize: f.blockSize, pieces: f.pieces, holders: f.holders ?? null })))
      else out(files.length === 0 ? 'no files\n' : table(['NAME', 'SIZE', 'PIECES', 'HOLDERS', 'FILE ID'], files.map((f) => [f.name, bytes(f.size), `${f.pieces} × ${bytes(f.blockSize)}`, f.holders === undefined ? '?' : String(f.holders), f.hash])))
    })

  p.command('status')
    .description('list the live nodes the tracker knows: bytes uploaded and downloaded, files held and how complete')
    .addOption(trackerOption())
    .addOption(jsonOption('print a JSON array of {nodeId, address, lastSeen, uploaded, downloaded, fileCount, files: [{fileId, have, pieces, completeness}]}'))
    .action(async (o: { tracker: string, json?: boolean }) => {
      const nodes = await askTracker(o.tracker, (c) => c.nodes())
      if (o.json === true) {
        json(nodes.map((n) => ({
          nodeId: n.nodeId,
          address: formatEndpoint({ address: n.host, port: n.port }),
          lastSeen: new Date(n.lastSeen).toISOString(),
          uploaded: n.uploaded,
          downloaded: n.downloaded,
          files: n.files.map((f) => ({ fileId: f.fileId, have: f.have, pieces: f.pieces, completeness: f.pieces === 0 ? 1 : f.have / f.pieces })),
          fileCount: n.fileCount,
        })))
      } else {
        out(nodes.length === 0 ? 'no nodes\n' : table(['NODE', 'ADDRESS', 'LAST SEEN', 'UP', 'DOWN', 'FILES'], nodes.map((n) => [n.nodeId.slice(0, 16), formatEndpoint({ address: n.host, port: n.port }), ago(Date.now() - n.lastSeen), bytes(n.uploaded), bytes(n.downloaded),
          n.files.map((f) => `${f.fileId.slice(0, 8)} ${f.pieces === 0 ? 100 : Math.floor(100 * f.have / f.pieces)}%`).join(', ') + (n.fileCount > n.files.length ? ', …' : '')])))
      }
    })

  p.command('demo')
    .description('run a local demo swarm: a tracker and peers on 127.0.0.1 share a generated file, one get downloads and verifies it; everything started is stopped')
    .addOption(new Option('--size <bytes>', 'size of the generated file (k/M/G suffixes)').default(256 * 1024 * 1024, '256M').argParser(parseSize).env('LP2P_DEMO_SIZE'))
    .addOption(new Option('--peers <n>', 'sharing peers').default(2).argParser((v) => { const n = Number(v); if (!Number.isInteger(n) || n < 1 || n > 16) throw new UsageError('--peers is 1..16'); return n }).env('LP2P_DEMO_PEERS'))
    .addOption(new Option('--keep', 'keep the temporary folder').env('LP2P_DEMO_KEEP'))
    .action(async (o: { size: number, peers: number, keep?: boolean }) => {
      // (SIGINT/SIGTERM stop the swarm and remove its folder before exiting with the signal's status)
      let off = (): void => {}
      const stopped = new Promise<number>((resolve) => { off = onStop((sig) => { off(); resolve(stopStatus(sig)) }) })
      const code = await demo({ size: o.size, peers: o.peers, keep: o.keep === true }, out, stopped).finally(off)
      if (code !== 0) process.exitCode = code
    })
  addSimulate(p, parseSize, out, argv)
  return p
}

/** "256M" → 268435456. Suffixes k, M, G, T (powers of 1024). */
export function parseSize (v: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmMgGtT]?)i?[bB]?$/.exec(v.trim())
  if (m === null) throw new UsageError(`size "${v}" is not a number with an optional k/M/G/T suffix`)
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't']
  const exact = Number(m[1]) * mult
  if (mult === 1 && !Number.isInteger(exact)) throw new UsageError(`size "${v}" is not a whole number of bytes`)
  const n = Math.round(exact) // (1.5M: bytes, whatever rounding the decimal takes)
  if (!Number.isSafeInteger(n)) throw new UsageError(`size "${v}" is too large`)
  return n
}

export async function main (argv: string[]): Promise<number> {
  const p = program(argv).exitOverride()
  for (const c of p.commands) c.exitOverride() // (commands made before: they do not inherit it)
  try {
    await p.parseAsync(argv)
    // an action that ends without throwing may still have set a status (demo's failure, get's interruption)
    return Number(process.exitCode ?? 0)
  } catch (err) {
    const e = err as { code?: string, exitCode?: number }
    // commander's own: help and --version exit as commander says (0); a usage error it caught
    // (unknown option or command, missing argument, a value not among the choices) is a usage
    // error like ours, 2
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) return e.exitCode === 0 ? 0 : EXIT.ERR_USAGE
    log.debug({ err }, 'command failed')
    process.stderr.write(`lp2p: ${terminalSafe((err as Error).message)}\n`)
    return exitCode(err)
  }
}

export { errorCode }

/** The process's whole run (bin/lp2p): `main`, its status, and a stdout that failed on the way. */
export function run (argv: string[]): void {
  watchStdout()
  main(argv).then((code) => { process.exitCode = code === 0 && stdoutFailure !== undefined ? 1 : code }, (err) => { process.stderr.write(`lp2p: ${terminalSafe(String(err))}\n`); process.exitCode = 1 })
}

if (require.main === module) run(process.argv)
