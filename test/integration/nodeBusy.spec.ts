import fs from 'node:fs'
import path from 'node:path'
import { firstValueFrom, timeout } from 'rxjs'
import { Lp2pNode, TrackerServer } from '../../src'
import { writeRandomFile } from '../../src/cli/demo'
import { PeerConnection } from '../../src/net/peerConnection'
import { tempDir } from './helpers'

const MB = 1024 * 1024

/**
 * Lp2pNode's wiring of BUSY behind an upload cap, in one process: a real tracker and a capped
 * seeder on 127.0.0.1, and a test client asking it for more pieces than its queue takes.
 */
describe('Lp2pNode behind an upload cap', () => {
  let dir: string
  let tracker: TrackerServer
  let seeder: Lp2pNode
  let conn: PeerConnection | null = null

  beforeAll(async () => {
    dir = tempDir('node-busy')
    const share = path.join(dir, 'share')
    fs.mkdirSync(share)
    writeRandomFile(path.join(share, 'b.bin'), 8 * MB) // 32 pieces of 256 KiB
    tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
    const t = await tracker.start()
    seeder = new Lp2pNode({ tracker: t, share, uploadLimit: 1e6 })
    await seeder.start()
  })

  afterAll(async () => {
    conn?.close()
    await seeder?.close()
    tracker?.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('declines what its queue cannot take with BUSY, saying to ask again in 0.75 piece times of its cap', async () => {
    const meta = seeder.publishedFiles[0]
    expect(meta).toMatchObject({ name: 'b.bin', blockSize: 256 * 1024, pieces: 32 })
    const a = seeder.address
    if (a === null) throw new Error('seeder does not serve')
    conn = new PeerConnection({ nodeId: 'dd'.repeat(16), host: '127.0.0.1', port: a.port })
    const c = conn
    // at 1 MB/s a 256 KiB piece takes 262 ms; the queue takes 25 ms of it (one piece when empty)
    const ask = async (i: number): Promise<unknown> => await firstValueFrom(c.request({ type: 'leech', hash: meta.hash, size: meta.size, offset: i * meta.blockSize, blockSize: meta.blockSize, pieces: meta.pieces }).pipe(timeout(5000)))
      .then((f) => f.msg.type, (e: unknown) => e)
    const answers = await Promise.all([0, 1, 2, 3].map(ask))
    expect(answers[0]).toBe('piece')
    const declined = answers.filter((x) => x !== 'piece')
    expect(declined.length).toBeGreaterThan(0)
    // ceil(0.75 × 262,144 B × 1000 / 1e6 B/s) = 197 ms
    for (const d of declined) expect(d).toMatchObject({ remoteCode: 'BUSY', retryMs: 197 })
  })
})
