import fs from 'node:fs'
import path from 'node:path'
import { lastValueFrom, toArray } from 'rxjs'
import { Lp2pNode, TrackerServer } from '../../src'
import { writeRandomFile } from '../../src/cli/demo'
import { MappedFile } from '../../src/storage/mappedFile'
import { sha256File, tempDir } from './helpers'

const MB = 1024 * 1024

/** What a node unmaps when it stops: a download it finished is served from a mapping of the verified file, closed once. */
describe('Lp2pNode.close and its finished downloads', () => {
  it('unmaps a finished download\'s verified file (mapped to serve it) when the node stops', async () => {
    const dir = tempDir('node-close')
    const share = path.join(dir, 'share')
    fs.mkdirSync(share)
    const sha = writeRandomFile(path.join(share, 'c.bin'), 2 * MB)
    const tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
    const t = await tracker.start()
    const seeder = new Lp2pNode({ tracker: t, share, watch: false })
    const leecher = new Lp2pNode({ tracker: t })
    const close = jest.spyOn(MappedFile.prototype, 'close')
    try {
      await seeder.start()
      await leecher.start()
      const out = path.join(dir, 'out')
      const events = await lastValueFrom(leecher.leech('c.bin', out).pipe(toArray()))
      expect(events.at(-1)).toMatchObject({ event: 'done', sha256: sha })
      expect(await sha256File(path.join(out, 'c.bin'))).toBe(sha)
      close.mockClear()
      await leecher.close()
      const closed = close.mock.contexts.map((m) => (m as MappedFile).path)
      expect(closed.filter((p) => p === path.join(out, 'c.bin'))).toHaveLength(1)
    } finally {
      close.mockRestore()
      await leecher.close()
      await seeder.close()
      tracker.close()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
