/**
 * Leech several files at once, at most CONCURRENCY at a time, then print a summary table.
 *
 *   make session SCRIPT=examples/leech-many.ts                      # self-contained: own tracker + seeder
 *   LP2P_TRACKER=10.0.0.5:7070 npx ts-node examples/leech-many.ts a.iso b.iso
 *
 * With no names, every file the tracker lists. Exit status 0 only when every file verified.
 */
import { performance } from 'node:perf_hooks'
import { catchError, from, last, lastValueFrom, map, mergeMap, of, tap, toArray } from 'rxjs'
import { createNode, printable, type DownloadEvent } from '../src'
import { localSwarm } from './local-swarm'

const CONCURRENCY = Math.min(16, Math.max(1, Number(process.env.CONCURRENCY ?? 2)))

interface Row { name: string, size: number, secs: number, rate: number, sha256: string, error?: string }

async function main (): Promise<number> {
  const swarm = await localSwarm()
  const node = await createNode({ tracker: swarm.tracker })
  try {
    const listed = await lastValueFrom(node.files$)
    const wanted = process.argv.slice(2).length > 0 ? process.argv.slice(2) : swarm.names.length > 0 ? swarm.names : listed.filter((f) => (f.holders ?? 1) > 0).map((f) => f.name)
    if (wanted.length === 0) { process.stderr.write('the tracker lists no files\n'); return 1 }
    process.stderr.write(`leeching ${wanted.length} file(s), ${CONCURRENCY} at a time, into ${swarm.out}\n`)

    const rows = await lastValueFrom(from(wanted).pipe(
      // the concurrency limit: at most CONCURRENCY downloads run; the next starts when one ends
      mergeMap((name) => {
        const t0 = performance.now()
        return node.leech(name, { out: swarm.out }).pipe(
          tap((e: DownloadEvent) => { if (e.event === 'start') process.stderr.write(`start ${printable(e.name)} (${mib(e.size)})\n`) }),
          last(),
          map((e): Row => {
            if (e.event !== 'done') throw new Error(`ended on ${e.event}`)
            const secs = (performance.now() - t0) / 1000
            process.stderr.write(`done  ${printable(e.name)}\n`)
            return { name: e.name, size: e.bytes, secs, rate: e.downloaded / secs, sha256: e.sha256 }
          }),
          // one failed file does not stop the others: it becomes a row with its error
          catchError((err: Error) => of<Row>({ name, size: 0, secs: (performance.now() - t0) / 1000, rate: 0, sha256: '', error: `${(err as { code?: string }).code ?? 'ERR'}: ${err.message}` })),
        )
      }, CONCURRENCY),
      toArray(),
    ))

    const table = [['NAME', 'SIZE', 'TIME', 'RATE', 'SHA256'], ...rows.map((r) => [
      printable(r.name), mib(r.size), `${r.secs.toFixed(2)} s`, r.error === undefined ? `${(r.rate / 1e6).toFixed(1)} MB/s` : '-', r.error ?? r.sha256.slice(0, 16),
    ])]
    const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)))
    process.stdout.write(table.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join('  ')).join('\n') + '\n')
    const failed = rows.filter((r) => r.error !== undefined).length
    process.stdout.write(`${rows.length - failed} of ${rows.length} verified\n`)
    return failed === 0 ? 0 : 1
  } finally {
    await node.close()
    await swarm.stop()
  }
}

const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`

main().then((code) => { process.exitCode = code }, (err: Error) => { process.stderr.write(`leech-many: ${err.message}\n`); process.exitCode = 1 })
