import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import readline from 'node:readline'

/** This checkout's root (package.json, bin/), from src/cli or dist/src/cli. */
export const CHECKOUT = path.join(__dirname, '..', '..', ...(__dirname.includes(`${path.sep}dist${path.sep}`) ? ['..'] : []))

/** The lp2p executable of this checkout. */
export const LP2P_BIN = path.join(CHECKOUT, 'bin', 'lp2p')

export interface Spawned {
  child: ChildProcess
  /** NDJSON lines printed on stdout so far. */
  events: Record<string, unknown>[]
  stderr: string[]
  /** The first stdout event matching, waiting up to `ms`. */
  waitFor: (pred: (e: Record<string, unknown>) => boolean, ms?: number) => Promise<Record<string, unknown>>
  /** Exit code (null when killed by a signal). */
  exited: Promise<number | null>
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop: (graceMs?: number) => Promise<void>
}

/**
 * Start `lp2p ARGS` as a child process and follow its NDJSON stdout (unless `stdout` is a file
 * descriptor to give it instead). Every process started
 * here is remembered so `stopAll` can end exactly those (by PID), and nothing else.
 */
export function spawnLp2p (args: string[], env: NodeJS.ProcessEnv = {}, stdout: 'pipe' | number = 'pipe'): Spawned {
  const child = spawn(process.execPath, [LP2P_BIN, ...args], { stdio: ['ignore', stdout, 'pipe'], env: { ...process.env, ...env } })
  started.add(child)
  const events: Record<string, unknown>[] = []
  const stderr: string[] = []
  const waiters: { pred: (e: Record<string, unknown>) => boolean, resolve: (e: Record<string, unknown>) => void }[] = []
  // (stdout given as a file descriptor: no events)
  if (child.stdout !== null) readline.createInterface({ input: child.stdout }).on('line', (line) => {
    let e: Record<string, unknown>
    try { e = JSON.parse(line) as Record<string, unknown> } catch { e = { line } }
    events.push(e)
    for (const w of [...waiters]) if (w.pred(e)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(e) }
  })
  readline.createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => { if (stderr.length < 10_000) stderr.push(l) })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { started.delete(child); resolve(code) }))
  return {
    child,
    events,
    stderr,
    exited,
    waitFor: (pred, ms = 30_000) => new Promise((resolve, reject) => {
      const hit = events.find(pred)
      if (hit !== undefined) { resolve(hit); return }
      const t = setTimeout(() => reject(new Error(`lp2p ${args.join(' ')}: no matching event in ${ms} ms; stderr: ${stderr.slice(-5).join(' | ')}`)), ms)
      void exited.then((code) => { clearTimeout(t); reject(new Error(`lp2p ${args[0]} exited (${String(code)}) before the event; stderr: ${stderr.slice(-5).join(' | ')}`)) })
      waiters.push({ pred, resolve: (e) => { clearTimeout(t); resolve(e) } })
    }),
    stop: async (graceMs = 3000) => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(t)
    },
  }
}

const started = new Set<ChildProcess>()

/** Kill (SIGKILL) every process spawned here that is still running. */
export function killAll (): void {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
}

/** Wait for the first `listening` event and return its address. */
export async function listening (s: Spawned, ms?: number): Promise<string> {
  const e = await s.waitFor((x) => x.event === 'listening', ms)
  return e.address as string
}
