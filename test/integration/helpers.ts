import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { writeRandomFile } from '../../src/cli/demo'
import { killAll, listening, spawnLp2p, type Spawned } from '../../src/cli/spawn'

export { listening, spawnLp2p, killAll }
export type { Spawned }

/** SHA-256 of a file, streamed. */
export function sha256File (p: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    fs.createReadStream(p).on('data', (d) => h.update(d)).on('end', () => resolve(h.digest('hex'))).on('error', reject)
  })
}

export function tempDir (prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `lp2p-${prefix}-`))
}

/** Run `lp2p ARGS` to its end; its exit code, NDJSON events and stderr lines. */
export async function runLp2p (args: string[], timeoutMs = 60_000): Promise<{ code: number | null, events: Record<string, unknown>[], stderr: string[] }> {
  const p = spawnLp2p(args)
  const t = setTimeout(() => { void p.stop(500) }, timeoutMs)
  const code = await p.exited
  clearTimeout(t)
  // let the stdout reader deliver the last lines
  await new Promise((r) => setImmediate(r))
  return { code, events: p.events, stderr: p.stderr }
}

/** A tracker on a free port; resolves to its address. */
export async function startTracker (procs: Spawned[], extra: string[] = ['--memory']): Promise<{ proc: Spawned, address: string }> {
  const proc = spawnLp2p(['tracker', '--port', '0', '--json', ...extra])
  procs.push(proc)
  return { proc, address: await listening(proc) }
}

export async function startPeer (procs: Spawned[], share: string, tracker: string, extra: string[] = []): Promise<{ proc: Spawned, address: string }> {
  const proc = spawnLp2p(['peer', '--share', share, '--tracker', tracker, '--json', ...extra])
  procs.push(proc)
  return { proc, address: await listening(proc, 60_000) }
}

export async function stopAll (procs: Spawned[]): Promise<void> {
  await Promise.all(procs.splice(0).map((p) => p.stop()))
  killAll()
}

/**
 * Processes and a temporary folder for each test of a describe block: whatever a test started is
 * stopped (by PID) and its folder removed after it, pass or fail.
 */
export function perTest (prefix: string): { procs: Spawned[], dir: () => string } {
  const procs: Spawned[] = []
  let current = ''
  beforeEach(() => { current = tempDir(prefix) })
  afterEach(async () => {
    await stopAll(procs)
    fs.rmSync(current, { recursive: true, force: true })
  })
  return { procs, dir: () => current }
}

/** A new folder `sub` of `dir` holding one file of `size` random bytes; its path and SHA-256. */
export function shareRandom (dir: string, sub: string, name: string, size: number): { share: string, file: string, sha: string } {
  const share = path.join(dir, sub)
  fs.mkdirSync(share, { recursive: true })
  const file = path.join(share, name)
  return { share, file, sha: writeRandomFile(file, size) }
}

/** A tracker (in memory) and one peer sharing `dir/sub/name`, `size` random bytes: the file's SHA-256, the tracker's address, the peer. */
export async function oneSeeder (procs: Spawned[], dir: string, sub: string, name: string, size: number): Promise<{ sha: string, tracker: string, peer: { proc: Spawned, address: string } }> {
  const { share, sha } = shareRandom(dir, sub, name, size)
  const { address: tracker } = await startTracker(procs)
  return { sha, tracker, peer: await startPeer(procs, share, tracker) }
}

/**
 * `lp2p get NAME --out OUT --tracker T --json` (with `--download-limit` when given: a download
 * slow enough to act on while it runs), tracked in `procs`; with `until`, resolves once an event
 * matches it (30 s at most).
 */
export async function startGet (procs: Spawned[], name: string, out: string, tracker: string, o: { downloadLimit?: string, until?: (e: Record<string, unknown>) => boolean } = {}): Promise<Spawned> {
  const get = spawnLp2p(['get', name, '--out', out, '--tracker', tracker, ...(o.downloadLimit === undefined ? [] : ['--download-limit', o.downloadLimit]), '--json'])
  procs.push(get)
  if (o.until !== undefined) await get.waitFor(o.until, 30_000)
  return get
}

/** The same random file `name` in two share folders `dir/a` and `dir/b` (two sources of one file). */
export function shareTwice (dir: string, a: string, b: string, name: string, size: number): { a: string, b: string, sha: string } {
  const first = shareRandom(dir, a, name, size)
  const other = path.join(dir, b)
  fs.mkdirSync(other, { recursive: true })
  fs.copyFileSync(first.file, path.join(other, name))
  return { a: first.share, b: other, sha: first.sha }
}
