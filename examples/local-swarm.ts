/**
 * Shared by the examples: the tracker to use. With LP2P_TRACKER set, that one (nothing is started).
 * Without it, a self-contained swarm on 127.0.0.1: a tracker and a sharing node in this process,
 * serving generated files from a temporary folder that `stop()` removes.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createNode, TrackerServer, type NodeHandle } from '../src'
import { writeRandomFile } from '../src/cli/demo'

export interface Swarm {
  /** "host:port" of the tracker. */
  tracker: string
  /** Names of the generated files (empty with an outside tracker). */
  names: string[]
  /** A folder for downloads: temporary when self-contained, LP2P_OUT or ./downloads otherwise. */
  out: string
  /** Stop what was started here and remove the temporary folder. */
  stop: () => Promise<void>
}

/** How many files to generate, and how big (MiB); tests pass small ones. */
const FILES = Math.min(16, Math.max(1, Number(process.env.EXAMPLE_FILES ?? 4)))
const SIZE_MIB = Math.min(1024, Math.max(1, Number(process.env.EXAMPLE_MIB ?? 32)))

export async function localSwarm (): Promise<Swarm> {
  const outside = process.env.LP2P_TRACKER
  if (outside !== undefined && outside !== '') {
    return { tracker: outside, names: [], out: path.resolve(process.env.LP2P_OUT ?? 'downloads'), stop: async () => {} }
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-example-'))
  const share = path.join(dir, 'share')
  fs.mkdirSync(share)
  const names: string[] = []
  for (let i = 0; i < FILES; i++) {
    const name = `sample-${i + 1}.bin`
    writeRandomFile(path.join(share, name), SIZE_MIB * 1024 * 1024)
    names.push(name)
  }
  const tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
  let seeder: NodeHandle | null = null
  const stop = async (): Promise<void> => {
    await seeder?.close()
    tracker.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  try {
    const t = await tracker.start()
    seeder = await createNode({ tracker: t, share })
    process.stderr.write(`local swarm: tracker 127.0.0.1:${t.port}, ${FILES} file(s) of ${SIZE_MIB} MiB shared from ${share}\n`)
    return { tracker: `127.0.0.1:${t.port}`, names, out: path.join(dir, 'out'), stop }
  } catch (err) {
    await stop()
    throw err
  }
}
