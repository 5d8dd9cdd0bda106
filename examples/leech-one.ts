/**
 * Leech one file and print its events as NDJSON (the same events as `lp2p get --json`).
 * Ctrl-C unsubscribes: the download stops, its sockets close, NAME.part stays; run it again to resume.
 *
 *   make session SCRIPT=examples/leech-one.ts
 *   LP2P_TRACKER=10.0.0.5:7070 LP2P_OUT=./downloads npx ts-node examples/leech-one.ts a.iso
 */
import { createNode } from '../src'
import { localSwarm } from './local-swarm'

async function main (): Promise<number> {
  const swarm = await localSwarm()
  const node = await createNode({ tracker: swarm.tracker })
  const name = process.argv[2] ?? swarm.names[0]
  if (name === undefined) { process.stderr.write('usage: leech-one.ts NAME-OR-ID-PREFIX\n'); await node.close(); await swarm.stop(); return 2 }
  const code = await new Promise<number>((resolve) => {
    const sub = node.leech(name, { out: swarm.out }).subscribe({
      next: (e) => process.stdout.write(JSON.stringify(e) + '\n'),
      error: (err: Error & { code?: string }) => { process.stdout.write(JSON.stringify({ event: 'error', code: err.code ?? 'ERR', message: err.message }) + '\n'); resolve(1) },
      complete: () => resolve(0),
    })
    process.once('SIGINT', () => { sub.unsubscribe(); process.stderr.write('cancelled: the .part stays for resume\n'); resolve(130) })
  })
  await node.close()
  await swarm.stop()
  return code
}

main().then((code) => { process.exitCode = code }, (err: Error) => { process.stderr.write(`leech-one: ${err.message}\n`); process.exitCode = 1 })
