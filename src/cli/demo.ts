import { createHash, randomFillSync } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { bytes } from './format'
import { killAll, listening, spawnLp2p, type Spawned } from './spawn'

export interface DemoOptions { size: number, peers: number, keep: boolean }

/** Write `size` random bytes to `file` a slice at a time; returns their SHA-256. */
export function writeRandomFile (file: string, size: number): string {
  const h = createHash('sha256')
  const fd = fs.openSync(file, 'w')
  const buf = Buffer.allocUnsafe(Math.min(size, 8 << 20))
  try {
    for (let done = 0; done < size;) {
      const n = Math.min(buf.length, size - done)
      randomFillSync(buf, 0, n)
      fs.writeSync(fd, buf, 0, n)
      h.update(buf.subarray(0, n))
      done += n
    }
  } finally { fs.closeSync(fd) }
  return h.digest('hex')
}

/**
 * The local demo swarm: a tracker and `peers` sharing peers on 127.0.0.1 (real processes),
 * a generated file, and one `get` through the network, verified against the original's hash.
 * Everything started is stopped at the end, whatever happens.
 */
export async function demo (o: DemoOptions, say: (s: string) => void, stopped?: Promise<number>): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-demo-'))
  const procs: Spawned[] = []
  try {
    // (once interrupted, the run says nothing more: its get ends killed, not failed)
    let interrupted = false
    const run = swarm(o, dir, procs, (s) => { if (!interrupted) say(s) })
    if (stopped === undefined) return await run
    run.catch(() => {}) // (an interrupted run's waits fail as its processes stop: nobody is listening any more)
    return await Promise.race([run, stopped.then((status) => { interrupted = true; say('interrupted: stopping the swarm\n'); return status })])
  } finally {
    await Promise.all(procs.map((p) => p.stop()))
    killAll()
    if (o.keep) say(`kept ${dir}\n`)
    else fs.rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * The swarm's processes run on the demo's own flags only: the user's LP2P_* variables (LP2P_SEED
 * would keep the get seeding for good, LP2P_DOWNLOAD_LIMIT slow it) are not theirs.
 */
function ownEnv (): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.keys(process.env).filter((k) => k.startsWith('LP2P_') && k !== 'LP2P_FROM_SOURCE').map((k) => [k, undefined]))
}

async function swarm (o: DemoOptions, dir: string, procs: Spawned[], say: (s: string) => void): Promise<number> {
  const env = ownEnv()
  const share = path.join(dir, 'share')
  const out = path.join(dir, 'downloads')
  fs.mkdirSync(share)
  say(`generating ${bytes(o.size)} of random data in ${share}\n`)
  const want = writeRandomFile(path.join(share, 'demo.bin'), o.size)
  const tracker = spawnLp2p(['tracker', '--port', '0', '--data', path.join(dir, 'tracker'), '--json'], env)
  procs.push(tracker)
  const t = await listening(tracker)
  say(`tracker  udp ${t}\n`)
  for (let i = 0; i < o.peers; i++) {
    const p = spawnLp2p(['peer', '--share', share, '--tracker', t, '--json'], env)
    procs.push(p)
    say(`peer ${i + 1}   tcp ${await listening(p, 120_000)} sharing demo.bin\n`)
  }
  const t0 = process.hrtime.bigint()
  const get = spawnLp2p(['get', 'demo.bin', '--out', out, '--tracker', t, '--json'], env)
  procs.push(get)
  const code = await get.exited
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  const done = get.events.find((e) => e.event === 'done')
  if (code !== 0 || done === undefined) {
    const err = get.events.find((e) => e.event === 'error')
    say(`get failed (exit ${String(code)}): ${String(err?.message ?? get.stderr.slice(-3).join(' | '))}\n`)
    return 1
  }
  // (an empty file needs no peer: there is no `peers` event)
  const sources = Math.max(0, ...get.events.filter((e) => e.event === 'peers').map((e) => e.sources as number))
  say(`get      ${bytes(o.size)} from ${sources} peer(s) in ${secs.toFixed(2)} s (${(o.size / 1e6 / secs).toFixed(0)} MB/s, process start and verification included)\n`)
  say(`sha256   ${String(done.sha256)} ${done.sha256 === want ? '= original ✓' : '≠ original ✗'}\n`)
  say(`saved    ${String(done.path)}${o.keep ? '' : ' (removed at exit: --keep keeps it)'}\n`)
  return done.sha256 === want ? 0 : 1
}
