import { createHash, randomBytes } from 'node:crypto'
import { TestScheduler } from 'rxjs/testing'
import { Observable, of, throwError, NEVER, delay, timer, mergeMap, type SchedulerLike } from 'rxjs'
import { leech, type LeechDeps, type LeechEvent } from '../../src/peer/leech'
import { DISCOVERY_BATCH_MS, MAX_BUSY_RETRY_MS } from '../../src/limits'
import type { FileMetaData, NodeInfo, PeerAddress, PeerRequest } from '../../src/protocol/messages'
import type { Frame } from '../../src/protocol/frames'
import type { PeerLink, WithoutReq } from '../../src/net/peerConnection'
import { MemorySink } from '../../src/storage/memorySink'
import { ConnectionClosedError, RemoteError, StorageError } from '../../src/errors'
import { TokenBucket } from '../../streams/rateLimit'

const BLOCK = 4096
const content = randomBytes(4 * BLOCK + 100) // 5 pieces, the last one short
const meta: FileMetaData = { name: 'f.bin', hash: createHash('sha256').update(content).digest('hex'), size: content.length, blockSize: BLOCK, pieces: 5 }

const peer = (c: string, port: number): NodeInfo => ({ nodeId: c.repeat(32), host: '127.0.0.1', port, lastSeen: 0, files: [{ fileId: meta.hash, have: 5, pieces: 5 }], fileCount: 1, uploaded: 0, downloaded: 0 })
const A = peer('a', 1); const B = peer('b', 2); const C = peer('c', 3)

/** How a fake peer behaves. Times are frames of the TestScheduler. */
interface Behaviour {
  cluster?: PeerAddress[] | 'silent'
  probe?: 'silent' | 'error' | 'ok'
  /** Pieces it holds (default: all). */
  holds?: number[]
  /** Frames a piece takes; 'silent' for never, 'error' for a dropped connection. */
  piece?: (index: number) => number | 'silent' | 'error' | 'corrupt' | 'busy' | { busy: number }
  /** A seeder's send-once rule: decline (SEEDED) when this says so, given the `copies` the asker sent. */
  seeded?: (index: number, copies: number | undefined) => boolean
}

class FakeLink implements PeerLink {
  readonly asked: number[] = []
  /** When each piece request came (frames). */
  readonly askedAt: number[] = []
  /** Whether each piece request said the asker is starved. */
  readonly askedStarved: boolean[] = []
  constructor (readonly peer: PeerAddress, private readonly b: Behaviour, private readonly scheduler: SchedulerLike) {}
  request (msg: WithoutReq<PeerRequest>): Observable<Frame> {
    const reply = (f: Frame, frames = 1): Observable<Frame> => of(f).pipe(delay(frames, this.scheduler))
    switch (msg.type) {
      case 'find_cluster':
        if (this.b.cluster === 'silent') return NEVER
        return reply({ msg: { type: 'cluster', req: 1, fileId: msg.fileId, peers: this.b.cluster ?? [] } })
      case 'get_hashes':
        return throwError(() => new Error('no hashes in this test'))
      case 'probe':
        if (this.b.probe === 'silent') return NEVER
        if (this.b.probe === 'error') return throwError(() => new Error('refused'))
        if (this.b.holds !== undefined) {
          const bitfield = new Uint8Array(1)
          for (const i of this.b.holds) bitfield[0] |= 0x80 >> i
          return reply({ msg: { type: 'have', req: 1, fileId: msg.fileId, totalPieces: meta.pieces, bitfield } })
        }
        return reply({ msg: { type: 'have', req: 1, fileId: msg.fileId, totalPieces: meta.pieces } })
      case 'leech': {
        const index = msg.offset / BLOCK
        this.asked.push(index)
        this.askedAt.push(this.scheduler.now())
        this.askedStarved.push(msg.starved === true)
        if (this.b.seeded?.(index, msg.copies) === true) return timer(1, this.scheduler).pipe(mergeMap(() => throwError(() => new RemoteError('SEEDED', 'sent already: ask a peer'))))
        const how = this.b.piece?.(index) ?? 2
        if (how === 'busy') return timer(1, this.scheduler).pipe(mergeMap(() => throwError(() => new RemoteError('BUSY', 'upload queue full'))))
        if (typeof how === 'object') return timer(1, this.scheduler).pipe(mergeMap(() => throwError(() => new RemoteError('BUSY', 'upload queue full', how.busy))))
        if (how === 'silent') return NEVER
        if (how === 'error') return timer(2, this.scheduler).pipe(mergeMap(() => throwError(() => new ConnectionClosedError(this.peer.host + ':' + String(this.peer.port), 'connection reset'))))
        const payload = Buffer.from(content.subarray(msg.offset, msg.offset + Math.min(BLOCK, meta.size - msg.offset)))
        if (how === 'corrupt') payload[0] ^= 0xff
        return reply({ msg: { type: 'piece', req: 1, pieceSize: payload.length, offset: msg.offset, totalPieces: meta.pieces, clusterName: meta.hash }, payload }, how === 'corrupt' ? 1 : how)
      }
    }
  }

  close (): void {}
}

function world (ts: TestScheduler, nodes: NodeInfo[], behaviours: Record<string, Behaviour>): { deps: LeechDeps, links: Map<string, FakeLink>, sinks: MemorySink[] } {
  const links = new Map<string, FakeLink>()
  const sinks: MemorySink[] = []
  return {
    links,
    sinks,
    deps: {
      scheduler: ts,
      tracker: {
        files: () => of([meta]).pipe(delay(1, ts)),
        nodes: () => of(nodes).pipe(delay(1, ts)),
      },
      link: (p) => {
        let l = links.get(p.nodeId)
        if (l === undefined) { l = new FakeLink(p, behaviours[p.nodeId] ?? {}, ts); links.set(p.nodeId, l) }
        return l
      },
      openSink: (m) => { const s = new MemorySink(m); sinks.push(s); return s },
    },
  }
}

const opts = { queryTimeoutMs: 5, pieceTimeoutMs: 10, pipeline: 2, rediscoverMs: 20, noSourceGraceMs: 60 }

function run (ts: TestScheduler, deps: LeechDeps): { events: LeechEvent[], error?: Error } {
  const events: LeechEvent[] = []
  const r: { events: LeechEvent[], error?: Error } = { events }
  leech('f.bin', deps, opts).subscribe({ next: (e) => events.push(e), error: (e: Error) => { r.error = e } })
  ts.flush()
  return r
}

const newScheduler = (): TestScheduler => new TestScheduler((a, e) => expect(a).toEqual(e))

describe('leech flow', () => {
  it('goes query → bootstrap → cluster → probe → pieces from every source → verified done', () => {
    const ts = newScheduler()
    // A knows C (not in the tracker's list); B is a plain neighbour
    const { deps, links, sinks } = world(ts, [A, B], { [A.nodeId]: { cluster: [C] } })
    const { events, error } = run(ts, deps)
    expect(error).toBeUndefined()
    expect(events[0]).toMatchObject({ event: 'start', fileId: meta.hash, pieces: 5 })
    expect(events[1]).toEqual({ event: 'peers', neighbours: 2, cluster: 3, sources: 3 })
    const pieces = events.filter((e) => e.event === 'piece')
    expect(pieces.map((e) => e.event === 'piece' && e.index).sort()).toEqual([0, 1, 2, 3, 4])
    // more than one source was used
    expect(new Set(pieces.map((e) => e.event === 'piece' && e.peer)).size).toBeGreaterThan(1)
    expect(links.get(C.nodeId)?.asked.length).toBeGreaterThan(0)
    expect(events.at(-1)).toEqual({ event: 'done', fileId: meta.hash, name: 'f.bin', path: 'memory:f.bin', bytes: meta.size, sha256: meta.hash, downloaded: meta.size })
    expect(sinks[0].data.equals(content)).toBe(true)
    expect(sinks[0].committed).toBe(true)
  })

  it('two seeders that each sent a piece elsewhere and decline it (SEEDED) while the asker names two holders: once both declined, it is asked for with copies 1 and served (a resumed get failed with exit 6 while two seeders were up)', () => {
    const ts = newScheduler()
    const sentElsewhere = (i: number, copies: number | undefined): boolean => i >= 3 && (copies === undefined || copies > 1)
    const { deps, links, sinks } = world(ts, [A, B], { [A.nodeId]: { seeded: sentElsewhere }, [B.nodeId]: { seeded: sentElsewhere } })
    const { events, error } = run(ts, deps)
    expect(error).toBeUndefined()
    expect(events.at(-1)).toMatchObject({ event: 'done', sha256: meta.hash })
    expect(sinks[0].data.equals(content)).toBe(true)
    const asks = [...(links.get(A.nodeId)?.asked ?? []), ...(links.get(B.nodeId)?.asked ?? [])]
    expect(asks.filter((i) => i === 3).length).toBeGreaterThanOrEqual(2)
  })

  it('lets go of the links of members whose probe failed (a hostile neighbour naming made-up peers by the dozen kept a socket open for each until the download ended); not of its sources', () => {
    const ts = newScheduler()
    const fakes = Array.from({ length: 40 }, (_, i) => ({ nodeId: (i + 0x100).toString(16).padStart(32, '0'), host: '127.0.0.1', port: 9000 + i }))
    const behaviours: Record<string, Behaviour> = { [B.nodeId]: { cluster: fakes } }
    for (const f of fakes) behaviours[f.nodeId] = { probe: 'silent' }
    const { deps, sinks } = world(ts, [A, B], behaviours)
    const unlinked: string[] = []
    const { events, error } = run(ts, { ...deps, unlink: (p) => unlinked.push(p.nodeId) })
    expect(error).toBeUndefined()
    expect(events.at(-1)).toMatchObject({ event: 'done', sha256: meta.hash })
    expect(sinks[0].committed).toBe(true)
    const probed = fakes.filter((f) => unlinked.includes(f.nodeId))
    expect(probed.length).toBeGreaterThan(0)
    expect(unlinked).not.toContain(A.nodeId)
    expect(unlinked.every((id) => fakes.some((f) => f.nodeId === id) || id === B.nodeId)).toBe(true)
  })

  it('lets go of the link of a neighbour that did not answer its cluster query', () => {
    const ts = newScheduler()
    const { deps } = world(ts, [A, B], { [B.nodeId]: { cluster: 'silent' } })
    const unlinked: string[] = []
    const { events, error } = run(ts, { ...deps, unlink: (p) => unlinked.push(p.nodeId) })
    expect(error).toBeUndefined()
    expect(events.at(-1)).toMatchObject({ event: 'done', sha256: meta.hash })
    expect(unlinked).toContain(B.nodeId)
    expect(unlinked).not.toContain(A.nodeId)
  })

  it('moves on from a neighbour that stays silent on the cluster query, and the silent one delays no one: pieces come before its timeout', () => {
    const ts = newScheduler()
    const { deps } = world(ts, [A, B], { [A.nodeId]: { cluster: 'silent' } })
    const times: Array<{ t: number, e: LeechEvent }> = []
    let error: Error | undefined
    // (a LAN's timeout: the silent neighbour is given up on after 2 s)
    const lan = { ...opts, queryTimeoutMs: 2000, rediscoverMs: 5000, noSourceGraceMs: 5000 }
    leech('f.bin', deps, lan).subscribe({ next: (e) => times.push({ t: ts.now(), e }), error: (e: Error) => { error = e } })
    ts.flush()
    expect(error).toBeUndefined()
    const firstPiece = times.find((x) => x.e.event === 'piece')
    expect(firstPiece?.t).toBeLessThanOrEqual(DISCOVERY_BATCH_MS + 10)
    // done before the silent neighbour's cluster query even timed out
    expect(times.at(-1)?.e).toMatchObject({ event: 'done', sha256: meta.hash })
    expect(times.at(-1)?.t).toBeLessThan(2000)
  })

  it('does not wait for a peer that goes silent: another source fetches its pieces (endgame)', () => {
    const ts = newScheduler()
    const { deps, links, sinks } = world(ts, [A, B], { [B.nodeId]: { piece: () => 'silent' } })
    const { events, error } = run(ts, deps)
    expect(error).toBeUndefined()
    // every piece came from A, including those B was asked for and never sent
    expect(events.filter((e) => e.event === 'piece').every((e) => e.event === 'piece' && e.peer === '127.0.0.1:1')).toBe(true)
    expect(links.get(B.nodeId)?.asked.length).toBeGreaterThan(0)
    expect(sinks[0].data.equals(content)).toBe(true)
    expect(events.at(-1)).toMatchObject({ event: 'done', sha256: meta.hash })
    // long before B's piece timeout (10 frames) would have fired more than once
    expect(ts.now()).toBeLessThan(20)
  })

  it('a piece waiting for our own download budget longer than the piece timeout is no fault of its peer: none is dropped, the file completes at the budget\'s pace', () => {
    const ts = newScheduler()
    const { deps } = world(ts, [A], {})
    // one piece per 30 frames (ms), no burst beyond a piece: pieces wait up to 120 frames, the piece timeout is 10
    const budget = new TokenBucket({ rate: BLOCK * 1000 / 30, burst: BLOCK, scheduler: ts })
    const { events, error } = run(ts, { ...deps, budget })
    expect(error).toBeUndefined()
    expect(events.filter((e) => e.event === 'peer-dropped')).toEqual([])
    expect(events.at(-1)).toMatchObject({ event: 'done', sha256: meta.hash })
    expect(ts.now()).toBeGreaterThanOrEqual(3 * 30) // (the first piece from the full bucket, the short last one ~at once)
  })

  it('a declined request (BUSY) gives its download budget back: a capped download in a busy swarm still goes at its cap', () => {
    const ts = newScheduler()
    // every other request is declined (the holder's queue is full half the time)
    let asks = 0
    const { deps, links } = world(ts, [A], { [A.nodeId]: { piece: () => asks++ % 2 === 0 ? 'busy' : 1 } })
    // one piece per 30 frames, no burst beyond a piece
    const budget = new TokenBucket({ rate: BLOCK * 1000 / 30, burst: BLOCK, scheduler: ts })
    const events: LeechEvent[] = []
    leech('f.bin', { ...deps, budget }, { ...opts, pipeline: 1, busyRetryMs: 3 }).subscribe((e) => events.push(e))
    ts.flush()
    expect(events.at(-1)).toMatchObject({ event: 'done', sha256: meta.hash })
    expect(links.get(A.nodeId)?.asked.length).toBeGreaterThanOrEqual(9)
    // five pieces (the last one short) at the cap: the first from the full bucket, then ~30 frames
    // each; a BUSY that kept its budget made it ~30 frames more per decline (~270 in all)
    expect(ts.now()).toBeLessThan(5 * 30 + 20)
  })

  it('drops a peer whose piece times out, asks it once more after its cool-down, and says which pieces nobody else can give', () => {
    const ts = newScheduler()
    // only B holds piece 4, and B never answers
    const { deps, sinks } = world(ts, [A, B], { [A.nodeId]: { holds: [0, 1, 2, 3] }, [B.nodeId]: { piece: () => 'silent' } })
    const { events, error } = run(ts, deps)
    const dropB = expect.objectContaining({ peer: '127.0.0.1:2', code: 'ERR_PEER_TIMEOUT' })
    expect(events.filter((e) => e.event === 'peer-dropped')).toEqual([dropB, dropB])
    expect(error).toMatchObject({ code: 'ERR_NO_SOURCES', missingPieces: 1 })
    expect(sinks[0].committed).toBe(false)
  })

  it('fails with ERR_NO_SOURCES when every source fails (each asked once more after its connection broke), keeping the partial file', () => {
    const ts = newScheduler()
    // A sends the first piece it is asked for, then its connection breaks; B's breaks at once
    let askedA = 0
    const { deps, sinks } = world(ts, [A, B], { [A.nodeId]: { piece: () => askedA++ === 0 ? 1 : 'error' }, [B.nodeId]: { piece: () => 'error' } })
    const { events, error } = run(ts, deps)
    expect(error).toMatchObject({ code: 'ERR_NO_SOURCES', missingPieces: 4 })
    expect(events.filter((e) => e.event === 'peer-dropped').map((e) => (e as { peer: string }).peer).sort()).toEqual(['127.0.0.1:1', '127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:2'])
    expect(sinks[0].committed).toBe(false)
    expect(sinks[0].closed).toBe(true)
  })

  it('fails with ERR_NO_SOURCES when nobody answers the probe', () => {
    const ts = newScheduler()
    const { deps } = world(ts, [A], { [A.nodeId]: { probe: 'silent' } })
    expect(run(ts, deps).error).toMatchObject({ code: 'ERR_NO_SOURCES' })
  })

  it('never declares a file done when its bytes do not hash to the file id', () => {
    const ts = newScheduler()
    const { deps, sinks } = world(ts, [A], { [A.nodeId]: { piece: (i) => i === 3 ? 'corrupt' : 1 } })
    const { events, error } = run(ts, deps)
    expect(error).toMatchObject({ code: 'ERR_HASH_MISMATCH' })
    expect(events.some((e) => e.event === 'done')).toBe(false)
    expect(sinks[0].committed).toBe(false)
  })

  it('stops asking and closes the sink when unsubscribed', () => {
    const ts = newScheduler()
    const { deps, links, sinks } = world(ts, [A], { [A.nodeId]: { piece: () => 100 } })
    const events: LeechEvent[] = []
    const sub = leech('f.bin', deps, { ...opts, pieceTimeoutMs: 1000, startWindow: 2 }).subscribe((e) => events.push(e))
    ts.schedule(() => sub.unsubscribe(), 20)
    ts.flush()
    expect(sinks[0].closed).toBe(true)
    expect(sinks[0].committed).toBe(false)
    expect(links.get(A.nodeId)?.asked).toHaveLength(2) // the pipeline, and nothing after
    expect(events.some((e) => e.event === 'done')).toBe(false)
  })

  it('stops the whole download on a storage error (not the peer\'s fault), keeping the partial file', () => {
    const ts = newScheduler()
    const { deps, sinks } = world(ts, [A, B], {})
    // the disk fills up after two pieces
    deps.openSink = (m) => { const s = new MemorySink(m, [], 2); sinks.push(s); return s }
    const { events, error } = run(ts, deps)
    expect(error).toMatchObject({ code: 'ERR_STORAGE' })
    expect(events.some((e) => e.event === 'peer-dropped')).toBe(false)
    expect(sinks[0].committed).toBe(false)
    expect(sinks[0].closed).toBe(true)
  })

  it('stops the whole download when recording a stored piece fails (its state file on a full disk), as an error of the flow', () => {
    const ts = newScheduler()
    const { deps, sinks } = world(ts, [A, B], {})
    deps.openSink = (m) => {
      const s = new MemorySink(m)
      const stored = s.stored.bind(s)
      let n = 0
      s.stored = (offset, data) => { if (++n > 2) throw new StorageError('no space left on device (simulated)'); stored(offset, data) }
      sinks.push(s)
      return s
    }
    const { events, error } = run(ts, deps)
    expect(error).toMatchObject({ code: 'ERR_STORAGE' })
    expect(events.filter((e) => e.event === 'piece')).toHaveLength(2)
    expect(events.some((e) => e.event === 'peer-dropped')).toBe(false)
    expect(sinks[0].committed).toBe(false)
    expect(sinks[0].closed).toBe(true)
  })

  it('fails with ERR_NOT_FOUND for a file the tracker does not know, opening nothing', () => {
    const ts = newScheduler()
    const { deps, sinks } = world(ts, [A], {})
    const events: LeechEvent[] = []
    let error: unknown
    leech('other.bin', deps, opts).subscribe({ next: (e) => events.push(e), error: (e) => { error = e } })
    ts.flush()
    expect(error).toMatchObject({ code: 'ERR_NOT_FOUND' })
    expect(sinks).toHaveLength(0)
  })

  describe('a source that answers BUSY', () => {
    it('is asked again after busyRetryMs (doubling while it stays busy), not at its next probe, and is not dropped', () => {
      const ts = newScheduler()
      let asks = 0
      const { deps, links, sinks } = world(ts, [A], { [A.nodeId]: { piece: () => ++asks <= 2 ? 'busy' : 1 } })
      const events: LeechEvent[] = []
      leech('f.bin', deps, { ...opts, busyRetryMs: 3 }).subscribe((e) => events.push(e))
      ts.flush()
      expect(events.at(-1)).toMatchObject({ event: 'done' })
      expect(sinks[0].committed).toBe(true)
      expect(events.some((e) => e.event === 'peer-dropped')).toBe(false)
      const at = links.get(A.nodeId)?.askedAt ?? []
      // BUSY arrives a frame after the ask; the next ask follows the 3-frame pause, well before the
      // 20-frame rediscovery; a second BUSY in a row doubles the pause
      expect(at[1] - at[0]).toBe(1 + 3)
      expect(at[2] - at[1]).toBe(1 + 6)
    })

    it('waits what the holder asks in its BUSY when that is longer than busyRetryMs (doubling as well), busyRetryMs when it is shorter', () => {
      const gapsWith = (retryMs: number): number[] => {
        const ts = newScheduler()
        ts.maxFrames = 100_000
        let asks = 0
        const { deps, links, sinks } = world(ts, [A], { [A.nodeId]: { piece: () => ++asks <= 2 ? { busy: retryMs } : 1 } })
        const events: LeechEvent[] = []
        leech('f.bin', deps, { ...opts, busyRetryMs: 3 }).subscribe((e) => events.push(e))
        ts.flush()
        expect(events.at(-1)).toMatchObject({ event: 'done' })
        expect(sinks[0].committed).toBe(true)
        const at = links.get(A.nodeId)?.askedAt ?? []
        return [at[1] - at[0], at[2] - at[1]]
      }
      expect(gapsWith(8)).toEqual([1 + 8, 1 + 16])
      expect(gapsWith(1)).toEqual([1 + 3, 1 + 6])
      expect(gapsWith(0)).toEqual([1 + 3, 1 + 6])
      // never longer than MAX_BUSY_RETRY_MS, doubling included
      expect(gapsWith(MAX_BUSY_RETRY_MS)).toEqual([1 + MAX_BUSY_RETRY_MS, 1 + MAX_BUSY_RETRY_MS])
      expect(gapsWith(0.75 * MAX_BUSY_RETRY_MS)).toEqual([1 + 0.75 * MAX_BUSY_RETRY_MS, 1 + MAX_BUSY_RETRY_MS])
    })

    it('a download starved (no piece for STARVED_WINDOW_MS after a steady pace) says so in its requests and pauses without doubling', () => {
      const ts = newScheduler()
      ts.maxFrames = 5000
      // pieces 0-2 come at once; A is busy for 3 and 4 until frame 900
      const { deps, links, sinks } = world(ts, [A], { [A.nodeId]: { piece: (i) => i < 3 || ts.now() >= 900 ? 1 : 'busy' } })
      const events: LeechEvent[] = []
      const landedAt: number[] = []
      // (one request at a time: the gaps below are between one ask and the next)
      leech('f.bin', deps, { ...opts, pipeline: 1, busyRetryMs: 3, rediscoverMs: 100 }).subscribe((e) => { events.push(e); if (e.event === 'piece') landedAt.push(ts.now()) })
      ts.flush()
      expect(events.at(-1)).toMatchObject({ event: 'done' })
      expect(sinks[0].committed).toBe(true)
      const l = links.get(A.nodeId)
      const at = l?.askedAt ?? []
      const starved = l?.askedStarved ?? []
      const firstLanded = landedAt[0]
      // (the three free pieces land first, whatever order the picker asks in)
      expect(landedAt.filter((t) => t < 900)).toHaveLength(3)
      // never starved within two windows (400 frames) of the first piece; starved once that is
      // over and the last free piece is out of the window (200 frames after it at most)
      const lastFree = landedAt[2]
      at.forEach((t, k) => { if (t < firstLanded + 400) expect(starved[k]).toBe(false) })
      const late = at.flatMap((t, k) => t >= Math.max(firstLanded + 400, lastFree + 200) && t < 900 ? [k] : [])
      expect(late.length).toBeGreaterThan(10)
      for (const k of late) expect(starved[k]).toBe(true)
      // before: the pause doubled to 16 × 3 frames; starved: every BUSY is followed by 3 frames
      const gaps = at.slice(1).map((t, k) => t - at[k])
      expect(Math.max(...gaps.filter((_, k) => at[k] < firstLanded + 400))).toBe(1 + 48)
      for (const k of late.slice(1)) expect(at[k] - at[k - 1]).toBe(1 + 3)
    })

    it('a lone holder that declines every request ends the download after noProgressMs with ERR_NO_SOURCES, naming why (before: a get at 0 % for good)', () => {
      const ts = newScheduler()
      const { deps, links, sinks } = world(ts, [A], { [A.nodeId]: { piece: () => 'busy' } })
      let error: Error | undefined
      let at = -1
      leech('f.bin', deps, { ...opts, busyRetryMs: 3, noProgressMs: 400 }).subscribe({ error: (e: Error) => { error = e; at = ts.now() } })
      ts.flush()
      expect(error).toMatchObject({ code: 'ERR_NO_SOURCES', missingPieces: 5 })
      expect(error?.message).toMatch(/nothing arrived for 0\.4 s from its 1 source\(s\): they declined every request/)
      // at the first check (every rediscoverMs) once 400 frames passed with nothing stored
      expect(at).toBeGreaterThanOrEqual(400)
      expect(at).toBeLessThanOrEqual(400 + opts.rediscoverMs)
      expect((links.get(A.nodeId)?.asked ?? []).length).toBeGreaterThan(5)
      expect(sinks[0].committed).toBe(false)
      expect(sinks[0].closed).toBe(true)
    })

    it('the no-progress clock runs only while no request waits for our own download cap, and restarts with each piece', () => {
      const ts = newScheduler()
      ts.maxFrames = 10_000
      // one piece per 300 frames from the budget, longer than noProgressMs (200) each: no fault of the peer's
      const budget = new TokenBucket({ rate: BLOCK * 1000 / 300, burst: BLOCK, scheduler: ts })
      const slow = world(ts, [A], {})
      const events: LeechEvent[] = []
      let error: Error | undefined
      leech('f.bin', { ...slow.deps, budget }, { ...opts, noProgressMs: 200 }).subscribe({ next: (e) => events.push(e), error: (e: Error) => { error = e } })
      ts.flush()
      expect(error).toBeUndefined()
      expect(events.at(-1)).toMatchObject({ event: 'done', sha256: meta.hash })
      expect(ts.now()).toBeGreaterThan(3 * 300)
      // a holder busy for 150 frames before each piece: each piece it sends restarts the clock
      const ts2 = newScheduler()
      ts2.maxFrames = 10_000
      let since = 0
      const { deps } = world(ts2, [A], { [A.nodeId]: { piece: () => { if (ts2.now() - since < 150) return 'busy'; since = ts2.now(); return 1 } } })
      const events2: LeechEvent[] = []
      let error2: Error | undefined
      leech('f.bin', deps, { ...opts, pipeline: 1, busyRetryMs: 3, noProgressMs: 200 }).subscribe({ next: (e) => events2.push(e), error: (e: Error) => { error2 = e } })
      ts2.flush()
      expect(error2).toBeUndefined()
      expect(events2.at(-1)).toMatchObject({ event: 'done', sha256: meta.hash })
      expect(ts2.now()).toBeGreaterThan(4 * 150)
    })

    it('gives its piece back at once: another holder serves it meanwhile', () => {
      const ts = newScheduler()
      const { deps, links, sinks } = world(ts, [A, B], { [A.nodeId]: { piece: () => 'busy' }, [B.nodeId]: { piece: () => 1 } })
      const events: LeechEvent[] = []
      leech('f.bin', deps, { ...opts, busyRetryMs: 3 }).subscribe((e) => events.push(e))
      ts.flush()
      expect(events.at(-1)).toMatchObject({ event: 'done' })
      expect(sinks[0].committed).toBe(true)
      // every piece came from B, A (always busy) was asked more than once and never dropped
      expect(events.filter((e) => e.event === 'piece').map((e) => (e as { peer: string }).peer)).toEqual(Array(5).fill('127.0.0.1:2'))
      expect((links.get(A.nodeId)?.asked ?? []).length).toBeGreaterThan(1)
      expect(events.some((e) => e.event === 'peer-dropped')).toBe(false)
    })
  })
})
