import fs from 'node:fs'
import path from 'node:path'
import { filter, firstValueFrom, lastValueFrom, type Subscription, tap, timeout, toArray } from 'rxjs'
import { Lp2pNode, TrackerServer, type LeechEvent } from '../../src'
import { writeRandomFile } from '../../src/cli/demo'
import { PeerConnection, type WithoutReq } from '../../src/net/peerConnection'
import { PeerServer } from '../../src/net/peerServer'
import { hasBit, setBit } from '../../src/peer/picker'
import type { Have, PeerRequest } from '../../src/protocol/messages'
import { sha256File, tempDir } from './helpers'

const MB = 1024 * 1024
const ASKER = 'ee'.repeat(16)

/**
 * Lp2pNode's wiring of watches, in one process: a real tracker, a seeder and a leecher on
 * 127.0.0.1, and a test client talking to the leecher's piece server while it downloads.
 */
describe('Lp2pNode serves watches of a download in progress', () => {
  let dir: string
  let tracker: TrackerServer
  let seeder: Lp2pNode
  let leecher: Lp2pNode
  let sha = ''
  const conns: PeerConnection[] = []
  const subs: Subscription[] = []

  beforeAll(async () => {
    dir = tempDir('node-watch')
    const share = path.join(dir, 'share')
    fs.mkdirSync(share)
    sha = writeRandomFile(path.join(share, 'w.bin'), 8 * MB) // 32 pieces of 256 KiB
    tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
    const t = await tracker.start()
    seeder = new Lp2pNode({ tracker: t, share, watch: false })
    await seeder.start()
    leecher = new Lp2pNode({ tracker: t })
    await leecher.start()
  })

  afterEach(() => {
    for (const s of subs.splice(0)) s.unsubscribe()
    for (const c of conns.splice(0)) c.close()
  })

  afterAll(async () => {
    await leecher?.close()
    await seeder?.close()
    tracker?.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  /** Start a download at `limit` bytes per second; its events so far, and a promise of its first `n` pieces. */
  function download (out: string, limit: number): { events: LeechEvent[], pieces: (n: number) => Promise<unknown> } {
    const events: LeechEvent[] = []
    const pieces$ = leecher.leech('w.bin', out, { downloadLimit: limit }).pipe(tap((e) => events.push(e)), filter((e) => e.event === 'piece'))
    let count = 0
    const waiting: Array<{ n: number, resolve: () => void }> = []
    subs.push(pieces$.subscribe({ next: () => { count++; for (const w of waiting.filter((w) => w.n <= count)) w.resolve() }, error: () => {} }))
    return { events, pieces: async (n) => await new Promise<void>((resolve) => { if (count >= n) resolve(); else waiting.push({ n, resolve }) }) }
  }

  const client = (): PeerConnection => {
    const a = leecher.address
    if (a === null) throw new Error('leecher does not serve')
    const c = new PeerConnection({ nodeId: 'dd'.repeat(16), host: '127.0.0.1', port: a.port })
    conns.push(c)
    return c
  }
  const request = async (c: PeerConnection, m: WithoutReq<PeerRequest>, ms = 5000): Promise<Have> =>
    (await firstValueFrom(c.request(m).pipe(timeout(ms)))).msg as Have
  const count = (bf: Uint8Array | undefined, pieces: number): number => { let n = 0; for (let i = 0; i < pieces; i++) if (bf !== undefined && hasBit(bf, i)) n++; return n }
  const missing = (bf: Uint8Array, pieces: number): Uint8Array => {
    const out = new Uint8Array(bf.length)
    for (let i = 0; i < pieces; i++) if (!hasBit(bf, i)) setBit(out, i)
    return out
  }

  it('answers a watch when the download stores a piece the asker lacks; an asker with `from` becomes a candidate source', async () => {
    // a peer that also downloads the file: it records what the leecher asks it
    const askedUs: PeerRequest[] = []
    const asker = new PeerServer((m) => {
      askedUs.push(m)
      return m.type === 'probe'
        ? { msg: { type: 'have', req: m.req, fileId: m.fileId, totalPieces: 32, bitfield: new Uint8Array(4) } }
        : { msg: { type: 'error', req: m.req, code: 'NOT_FOUND', message: 'nothing here' } }
    }, { host: '127.0.0.1', port: 0 })
    const askerAt = await asker.start()
    try {
      const d = download(path.join(dir, 'out-watch'), 2 * MB)
      await d.pieces(1)
      const c = client()
      const now = await request(c, { type: 'probe', fileId: sha })
      expect(now).toMatchObject({ type: 'have', fileId: sha, totalPieces: 32 })
      expect(now.version).toBeGreaterThanOrEqual(1)
      expect(count(now.bitfield, 32)).toBe(now.version)
      // nothing new for us since that version: the watch is held until the leecher stores a piece we lack
      const t0 = Date.now()
      const news = await request(c, { type: 'probe', fileId: sha, since: now.version, lacks: missing(now.bitfield as Uint8Array, 32), waitMs: 8000, from: { nodeId: ASKER, port: askerAt.port } }, 12_000)
      expect(Date.now() - t0).toBeLessThan(4000) // a piece lands every ~125 ms at 2 MiB/s, far sooner than waitMs
      expect(news.version).toBeGreaterThan(now.version as number)
      expect(count(news.bitfield, 32)).toBe(news.version)
      // the leecher learned of us from `from`, at the address it saw, and asked us for what we hold
      for (let i = 0; i < 200 && !askedUs.some((m) => m.type === 'probe' && m.fileId === sha); i++) await new Promise((r) => setTimeout(r, 10))
      expect(askedUs.find((m) => m.type === 'probe')).toMatchObject({ type: 'probe', fileId: sha })
    } finally {
      await asker.close()
    }
  })

  it('a resumed download serves the pieces it stored before, from the moment its hash list is verified', async () => {
    const out = path.join(dir, 'out-resume')
    const first = download(out, 2 * MB)
    await first.pieces(6)
    for (const s of subs.splice(0)) s.unsubscribe() // cancelled: the .part and its state stay
    const before = first.events.flatMap((e) => e.event === 'piece' ? [e.index] : [])
    const events: LeechEvent[] = []
    const second = lastValueFrom(leecher.leech('w.bin', out, { downloadLimit: MB }).pipe(tap((e) => events.push(e)), toArray()))
    second.catch(() => {}) // awaited below; a failed expectation before that closes the node under it
    for (let i = 0; i < 200 && events.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    const start = events[0] as LeechEvent & { event: 'start' }
    expect(start).toMatchObject({ event: 'start', fileId: sha })
    expect(start.present).toBeGreaterThanOrEqual(before.length)
    // the first answer with any piece (the hash list is verified) already has every piece of the
    // first run: those are not fetched again, so only the resume can have put them there
    const c = client()
    let have: Have | null = null
    for (let i = 0; i < 250; i++) {
      have = await request(c, { type: 'probe', fileId: sha })
      if (count(have.bitfield, 32) > 0) break
      await new Promise((r) => setTimeout(r, 20))
    }
    const bits = have?.bitfield as Uint8Array
    expect(before.filter((i) => !hasBit(bits, i))).toEqual([])
    expect(have?.version).toBe(count(bits, 32))
    expect(have?.version).toBeGreaterThanOrEqual(start.present)
    const done = (await second).at(-1) as LeechEvent & { event: 'done' }
    expect(done).toMatchObject({ event: 'done', sha256: sha })
    expect(await sha256File(done.path)).toBe(sha)
  })
})
