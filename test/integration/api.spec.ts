import fs from 'node:fs'
import path from 'node:path'
import { filter, firstValueFrom, lastValueFrom, tap, timeout, toArray } from 'rxjs'
import { PeerConnection } from '../../src/net/peerConnection'
import { createNode, TrackerServer, UsageError, type DownloadEvent, type NodeHandle } from '../../src'
import { writeRandomFile } from '../../src/cli/demo'
import { sha256File, tempDir } from './helpers'

const MB = 1024 * 1024

/** The library API in one process: a real tracker and real nodes on 127.0.0.1, real files. */
describe('library API (createNode, leech)', () => {
  let dir: string
  let tracker: TrackerServer
  let seeder: NodeHandle
  let leecher: NodeHandle
  const sha: Record<string, string> = {}
  let trackerAt = ''

  beforeAll(async () => {
    dir = tempDir('api')
    const share = path.join(dir, 'share')
    fs.mkdirSync(share)
    for (const [name, size] of [['a.bin', 12 * MB], ['b.bin', 10 * MB], ['c.bin', 16 * MB]] as const) sha[name] = writeRandomFile(path.join(share, name), size)
    tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
    const t = await tracker.start()
    trackerAt = `127.0.0.1:${t.port}`
    seeder = await createNode({ tracker: `127.0.0.1:${t.port}`, share, watch: false })
    leecher = await createNode({ tracker: t })
  })

  afterAll(async () => {
    await leecher?.close()
    await seeder?.close()
    tracker?.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('lists the tracker\'s files once per subscription', async () => {
    const files = await firstValueFrom(leecher.files$)
    expect(files.map((f) => f.name).sort()).toEqual(['a.bin', 'b.bin', 'c.bin'])
    expect(files.find((f) => f.name === 'c.bin')).toMatchObject({ size: 16 * MB, fileId: sha['c.bin'] })
    expect(seeder.shared.map((f) => f.name).sort()).toEqual(['a.bin', 'b.bin', 'c.bin'])
  })

  it('runs two downloads at once; each ends in progress 100% then done, verified', async () => {
    const out = path.join(dir, 'out1')
    const one = (name: string): Promise<DownloadEvent[]> => lastValueFrom(leecher.leech(name, { out }).pipe(toArray()))
    const [a, b] = await Promise.all([one('a.bin'), one(sha['b.bin'].slice(0, 12))])
    for (const [events, name] of [[a, 'a.bin'], [b, 'b.bin']] as const) {
      expect(events[0]).toMatchObject({ event: 'start', name, present: 0 })
      expect(events.at(-2)).toMatchObject({ event: 'progress', percent: 100 })
      const done = events.at(-1) as DownloadEvent & { event: 'done' }
      expect(done).toMatchObject({ event: 'done', name, sha256: sha[name] })
      expect(await sha256File(done.path)).toBe(sha[name])
      expect(events.some((e) => (e as { event: string }).event === 'hashes' || (e as { event: string }).event === 'piece')).toBe(false)
    }
    // both downloads over: no connection left open
    expect(leecher.core.linkCount).toBe(0)
    // and the one-off publishes they sent (first piece, complete file) do not pile up once answered
    for (let i = 0; i < 100 && leecher.core.pendingRequests > 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(leecher.core.pendingRequests).toBe(0)
  })

  it('a downloaded file that changes on disk is no longer seeded nor listed at the tracker', async () => {
    const holders = async (): Promise<number | undefined> => (await firstValueFrom(leecher.files$)).find((f) => f.name === 'a.bin')?.holders
    // the previous test's download of a.bin is seeded by the leecher: two holders
    for (let i = 0; i < 100 && await holders() !== 2; i++) await new Promise((r) => setTimeout(r, 50))
    expect(await holders()).toBe(2)
    fs.truncateSync(path.join(dir, 'out1', 'a.bin'), 1000)
    // someone asks the leecher for a piece of it
    const at = leecher.core.address as { address: string, port: number }
    const c = new PeerConnection({ nodeId: 'e'.repeat(32), host: at.address, port: at.port })
    try {
      const reply = await firstValueFrom(c.request({ type: 'leech', hash: sha['a.bin'], size: 12 * MB, offset: 0, blockSize: 256 * 1024, pieces: 48 }).pipe(timeout(3000))).then(() => 'piece', (e: { remoteCode?: string }) => e.remoteCode)
      expect(reply).not.toBe('piece')
    } finally { c.close() }
    for (let i = 0; i < 100 && await holders() !== 1; i++) await new Promise((r) => setTimeout(r, 50))
    expect(await holders()).toBe(1)
  })

  it('cancelling one download keeps its .part and the other download\'s link; a second leech resumes it', async () => {
    const out = path.join(dir, 'out2')
    // both slow (4 MB/s each) so the cancel happens while the other is mid-way
    const other = lastValueFrom(leecher.leech('a.bin', { out, downloadLimit: '4Mi' }).pipe(toArray()))
    let linksAtCancel = -1
    const seen: DownloadEvent[] = []
    await firstValueFrom(leecher.leech('c.bin', { out, downloadLimit: 4 * MB }).pipe(
      tap((e) => seen.push(e)),
      filter((e) => e.event === 'progress' && e.percent >= 20),
    ))
    // firstValueFrom unsubscribed: the c download is cancelled
    linksAtCancel = leecher.core.linkCount
    expect(seen.some((e) => e.event === 'done')).toBe(false)
    expect(fs.existsSync(path.join(out, 'c.bin.part'))).toBe(true)
    expect(fs.existsSync(path.join(out, 'c.bin'))).toBe(false)
    // the seeder's link is still used by the other download
    expect(linksAtCancel).toBe(1)

    const a = await other
    const aDone = a.at(-1) as DownloadEvent & { event: 'done' }
    expect(aDone.event).toBe('done')
    expect(await sha256File(aDone.path)).toBe(sha['a.bin'])

    const again = await lastValueFrom(leecher.leech('c.bin', { out }).pipe(toArray()))
    const start = again[0] as DownloadEvent & { event: 'start' }
    expect(start.event).toBe('start')
    expect(start.present).toBeGreaterThan(0)
    const done = again.at(-1) as DownloadEvent & { event: 'done' }
    expect(done.event).toBe('done')
    expect(done.downloaded).toBeLessThan(16 * MB) // only what the first run did not fetch
    expect(await sha256File(done.path)).toBe(sha['c.bin'])
    expect(fs.existsSync(path.join(out, 'c.bin.part'))).toBe(false)
  })

  it('closing the node ends its running downloads with an error; the .part stays', async () => {
    const other = await createNode({ tracker: trackerAt })
    const out = path.join(dir, 'out4')
    const events: DownloadEvent[] = []
    const run = lastValueFrom(other.leech('b.bin', { out, downloadLimit: 2 * MB }).pipe(tap((e) => {
      events.push(e)
      if (e.event === 'progress') void other.close()
    })))
    await expect(run).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' })
    expect(events.some((e) => e.event === 'done')).toBe(false)
    expect(fs.existsSync(path.join(out, 'b.bin.part'))).toBe(true)
    expect(other.core.linkCount).toBe(0)
    await other.close() // twice is fine
    await expect(lastValueFrom(other.leech('b.bin', { out }))).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' })
  })

  it('a download is listed at the tracker from its start, with nothing held yet: others can find it as a neighbour at once', async () => {
    // a file whose only holder is gone: the download starts but gets no piece
    const share = path.join(dir, 'share-gone')
    fs.mkdirSync(share)
    const fileId = writeRandomFile(path.join(share, 'gone.bin'), MB)
    const gone = await createNode({ tracker: trackerAt, share, watch: false })
    await gone.close()
    const other = await createNode({ tracker: trackerAt })
    expect(other.address).not.toBeNull()
    const events: DownloadEvent[] = []
    const sub = other.leech('gone.bin', { out: path.join(dir, 'out5') }).subscribe({ next: (e) => events.push(e), error: () => {} })
    // the tracker's entry for `other` on this file, read every 25 ms until `settled` (at most 1 s)
    const entry = async (settled: (e: { have: number } | undefined) => boolean): Promise<{ have: number } | undefined> => {
      let e: { have: number } | undefined
      for (let i = 0; i < 40; i++) {
        await new Promise((r) => setTimeout(r, 25))
        const nodes = await firstValueFrom(leecher.core.trackerClient.sample(fileId, 16))
        e = nodes.find((n) => n.nodeId === other.nodeId)?.files.find((f) => f.fileId === fileId)
        if (settled(e)) break
      }
      return e
    }
    try {
      const listed = await entry((e) => e !== undefined)
      expect(events[0]).toMatchObject({ event: 'start', name: 'gone.bin' })
      expect(listed).toMatchObject({ have: 0 })
      // cancelled, it is listed no more (the node lives on)
      sub.unsubscribe()
      expect(await entry((e) => e === undefined)).toBeUndefined()
    } finally {
      sub.unsubscribe()
      await other.close()
    }
  })

  it('refuses bad input with a UsageError', async () => {
    expect(() => leecher.leech('a.bin', {} as never)).toThrow(UsageError)
    expect(() => leecher.watchFiles(1)).toThrow(UsageError)
    await expect(createNode({ tracker: 'nowhere' })).rejects.toThrow(UsageError)
    await expect(createNode({ tracker: '127.0.0.1:1', downloadLimit: 'fast' })).rejects.toThrow(UsageError)
    // each option is checked before anything is bound or sent (before, some bound a Unix socket, sent 650 heartbeats/s or failed later)
    const bad: [Partial<Parameters<typeof createNode>[0]>, RegExp][] = [
      [{ tracker: { address: 'tracker.lan', port: 7070 } }, /tracker must be/],
      [{ tracker: { address: '127.0.0.1', port: 99999 } }, /tracker must be/],
      [{ host: 'foo' }, /host must be an IP address/],
      [{ port: 70000 }, /port must be an integer/],
      [{ port: 'abc' as unknown as number }, /port must be an integer/],
      [{ port: 1.5 }, /port must be an integer/],
      [{ heartbeatMs: 0 }, /heartbeatMs must be/],
      [{ heartbeatMs: NaN }, /heartbeatMs must be/],
      [{ trackerTimeoutMs: -5 }, /trackerTimeoutMs must be/],
      [{ trackerAttempts: 0 }, /trackerAttempts must be/],
      [{ share: path.join(dir, 'missing') }, /share: cannot read .*missing/],
      [{ share: path.join(dir, 'share', 'a.bin') }, /share: .*a\.bin is not a folder/],
      [{ share: path.join(dir, 'share'), serve: false }, /share needs serve/],
    ]
    for (const [opts, message] of bad) await expect(createNode({ tracker: trackerAt, ...opts })).rejects.toThrow(message)
    for (const [opts] of bad) await expect(createNode({ tracker: trackerAt, ...opts })).rejects.toBeInstanceOf(UsageError)
  })

  it('a tracker request running when the node closes, or made after, fails (ERR_CONNECTION_CLOSED) instead of never settling; a watchFiles subscription ends with it', async () => {
    const other = await createNode({ tracker: trackerAt, serve: false, trackerTimeoutMs: 5_000 })
    const running = firstValueFrom(other.files$)
    const watched = lastValueFrom(other.watchFiles(100))
    await new Promise((r) => setImmediate(r))
    await other.close()
    await expect(running).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' })
    await expect(watched).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' })
    await expect(firstValueFrom(other.files$)).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' })
  })

  it('an unknown file ends the stream with the not-found error', async () => {
    await expect(lastValueFrom(leecher.leech('nope.bin', { out: path.join(dir, 'out3') }))).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' })
  })
})
