import { createHash, randomBytes } from 'node:crypto'
import { NEVER, Observable, Subject, finalize, map, mergeMap, throwError, timer } from 'rxjs'
import { leechFile, type LeechDeps, type LeechEvent, type LeechOptions } from '../../src/peer/leech'
import type { FileMetaData, PeerAddress, PeerRequest, Probe } from '../../src/protocol/messages'
import type { Frame } from '../../src/protocol/frames'
import type { PeerLink, WithoutReq } from '../../src/net/peerConnection'
import { MemorySink } from '../../src/storage/memorySink'
import { SimScheduler } from '../../src/sim/scheduler'
import { REPROBE_MS, STALL_MIN_MS } from '../../src/limits'
import { ConnectionClosedError } from '../../src/errors'

// Watches, askers, stall timeouts and endgame copies of `leechFile`, on a SimScheduler (virtual
// milliseconds, no frame limit). Each fake peer is a script: a function from a request (and the
// virtual time) to its reply.

const BLOCK = 4096

interface TestFile { content: Buffer, meta: FileMetaData }
function makeFile (pieces: number): TestFile {
  const size = (pieces - 1) * BLOCK + 100
  const content = randomBytes(size)
  return { content, meta: { name: 'f.bin', hash: createHash('sha256').update(content).digest('hex'), size, blockSize: BLOCK, pieces } }
}

const addr = (c: string, port: number): PeerAddress => ({ nodeId: c.repeat(32), host: '127.0.0.1', port })
const A = addr('a', 1); const B = addr('b', 2); const C = addr('c', 3); const D = addr('d', 4)
const label = (p: PeerAddress): string => `${p.host}:${p.port}`
const SELF = { nodeId: 'f'.repeat(32), port: 9999 }

const bits = (n: number, holds: number[]): Uint8Array => {
  const bf = new Uint8Array(Math.ceil(n / 8))
  for (const i of holds) bf[i >> 3] |= 0x80 >> (i & 7)
  return bf
}
const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i)

type Req = WithoutReq<PeerRequest>
type Script = (msg: Req, now: number) => Observable<Frame>
interface Logged { t: number, msg: Req }

class ScriptLink implements PeerLink {
  readonly log: Logged[] = []
  /** Watches (probes with `since`) open right now, and the most ever open at once. */
  openWatches = 0
  maxOpenWatches = 0
  constructor (readonly peer: PeerAddress, private readonly script: Script, private readonly s: SimScheduler) {}
  request (msg: Req): Observable<Frame> {
    this.log.push({ t: this.s.now(), msg })
    const reply = this.script(msg, this.s.now())
    if (msg.type !== 'probe' || msg.since === undefined) return reply
    this.openWatches++
    this.maxOpenWatches = Math.max(this.maxOpenWatches, this.openWatches)
    return reply.pipe(finalize(() => { this.openWatches-- }))
  }

  close (): void {}
  watches (): Array<{ t: number, msg: Probe }> { return this.log.filter((l) => l.msg.type === 'probe' && l.msg.since !== undefined) as Array<{ t: number, msg: Probe }> }
  plainProbes (): Logged[] { return this.log.filter((l) => l.msg.type === 'probe' && l.msg.since === undefined) }
  pieceAsks (): Array<{ t: number, index: number }> {
    return this.log.filter((l) => l.msg.type === 'leech').map((l) => ({ t: l.t, index: (l.msg as { offset: number }).offset / BLOCK }))
  }
}

/** Replies for scripts. */
function replies (s: SimScheduler, f: TestFile): {
  have: (holds: number[] | null, version?: number, after?: number) => Observable<Frame>
  piece: (msg: Req, after: number) => Observable<Frame>
  cluster: () => Observable<Frame>
} {
  const later = (fr: Frame, ms: number): Observable<Frame> => timer(ms, s).pipe(map(() => fr))
  return {
    have: (holds, version, after = 1) => later({
      msg: {
        type: 'have', req: 1, fileId: f.meta.hash, totalPieces: f.meta.pieces,
        ...(holds === null ? {} : { bitfield: bits(f.meta.pieces, holds) }),
        ...(version === undefined ? {} : { version }),
      },
    }, after),
    piece: (msg, after) => {
      const offset = (msg as { offset: number }).offset
      const payload = Buffer.from(f.content.subarray(offset, Math.min(offset + BLOCK, f.meta.size)))
      return later({ msg: { type: 'piece', req: 1, pieceSize: payload.length, offset, totalPieces: f.meta.pieces, clusterName: f.meta.hash }, payload }, after)
    },
    cluster: () => later({ msg: { type: 'cluster', req: 1, fileId: f.meta.hash, peers: [] } }, 1),
  }
}

interface World { s: SimScheduler, deps: LeechDeps, links: Map<string, ScriptLink>, events: Array<LeechEvent & { t: number }>, sink: () => MemorySink, error: () => unknown, stop: () => void }

/** `tracker(now)`: who the tracker lists. Every peer's `find_cluster` answers an empty cluster. */
function world (f: TestFile, tracker: (now: number) => PeerAddress[], scripts: Record<string, Script>, opts: LeechOptions, extra: Partial<LeechDeps> = {}): World {
  const s = new SimScheduler()
  const links = new Map<string, ScriptLink>()
  const events: Array<LeechEvent & { t: number }> = []
  let sink: MemorySink | undefined
  let error: unknown
  const deps: LeechDeps = {
    scheduler: s,
    selfId: SELF.nodeId,
    selfPort: SELF.port,
    tracker: {
      files: () => timer(1, s).pipe(map(() => [f.meta])),
      nodes: () => timer(1, s).pipe(map(() => tracker(s.now()).map((p) => ({ ...p, lastSeen: 0, files: [], fileCount: 1, uploaded: 0, downloaded: 0 })))),
    },
    link: (p) => {
      let l = links.get(p.nodeId)
      if (l === undefined) {
        const script = scripts[p.nodeId] ?? ((): Observable<Frame> => NEVER)
        const r = replies(s, f)
        l = new ScriptLink(p, (msg, now) => msg.type === 'find_cluster' ? r.cluster() : script(msg, now), s)
        links.set(p.nodeId, l)
      }
      return l
    },
    openSink: (m) => { sink = new MemorySink(m); return sink },
    ...extra,
  }
  const sub = leechFile(f.meta, deps, opts).subscribe({ next: (e) => events.push({ ...e, t: s.now() }), error: (e) => { error = e } })
  return { s, deps, links, events, sink: () => sink as MemorySink, error: () => error, stop: () => sub.unsubscribe() }
}

const piecesFrom = (w: World, p: PeerAddress): Array<{ index: number, t: number }> =>
  w.events.flatMap((e) => e.event === 'piece' && e.peer === label(p) ? [{ index: e.index, t: e.t }] : [])
const drops = (w: World): Array<{ peer: string, code: string, t: number }> =>
  w.events.flatMap((e) => e.event === 'peer-dropped' ? [{ peer: e.peer, code: e.code, t: e.t }] : [])

describe('leechFile: watches', () => {
  it('watches an idle partial holder (since = its version, lacks = missing pieces, waitMs, from), one watch at a time, and fetches its news', () => {
    const f = makeFile(6)
    const s0: { r?: ReturnType<typeof replies> } = {}
    const NEWS_AT = 300
    const w = world(f, () => [A], {
      // A holds pieces 0-2 (version 3) until NEWS_AT, then all six (version 6); a watch is held
      // until A has news, or for its waitMs
      [A.nodeId]: (msg, now) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'leech') return r.piece(msg, 5)
        if (msg.type !== 'probe') return NEVER
        const holds = now >= NEWS_AT ? range(0, 6) : range(0, 3)
        const version = holds.length
        if (msg.since === undefined || msg.since < version) return r.have(holds, version)
        return r.have(range(0, 6), 6, Math.min(NEWS_AT - now, msg.waitMs ?? 0))
      },
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 1000, rediscoverMs: 8000, noSourceGraceMs: 60_000, watchMs: 1500 })
    s0.r = replies(w.s, f)
    w.s.run(5000)
    w.stop()

    expect(w.error()).toBeUndefined()
    const a = w.links.get(A.nodeId) as ScriptLink
    const watches = a.watches()
    expect(watches.length).toBeGreaterThan(0)
    expect(watches[0].t).toBeLessThan(NEWS_AT)
    expect(watches[0].msg).toMatchObject({ type: 'probe', fileId: f.meta.hash, since: 3, waitMs: 1500, from: SELF })
    expect(Buffer.from(watches[0].msg.lacks as Uint8Array)).toEqual(Buffer.from(bits(6, [3, 4, 5])))
    expect(a.maxOpenWatches).toBe(1)
    // the news came through the watch (no other probe was sent to A before the file was done)
    const done = w.events.find((e) => e.event === 'done')
    expect(done).toMatchObject({ sha256: f.meta.hash })
    expect(piecesFrom(w, A).map((p) => p.index).sort()).toEqual(range(0, 6))
    expect(piecesFrom(w, A).filter((p) => p.index >= 3).every((p) => p.t >= NEWS_AT && p.t < NEWS_AT + 100)).toBe(true)
    expect(a.plainProbes().filter((l) => l.t < (done as { t: number }).t)).toHaveLength(1)
    expect(w.sink().data.equals(f.content)).toBe(true)
  })

  it.each([
    ['times out', 'ERR_PEER_TIMEOUT', (): Observable<Frame> => NEVER, 1500 + 50],
    ['errors', 'ERR_CONNECTION_CLOSED', (s: SimScheduler): Observable<Frame> => timer(30, s).pipe(mergeMap(() => throwError(() => Object.assign(new Error('connection reset'), { code: 'ERR_CONNECTION_CLOSED' })))), 30],
  ])('drops a source whose watch %s', (_, code, watchReply, after) => {
    const f = makeFile(6)
    const s0: { r?: ReturnType<typeof replies>, s?: SimScheduler } = {}
    // A holds 0-2 and nobody holds the rest: A goes idle and is watched
    const w = world(f, () => [A], {
      [A.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'leech') return r.piece(msg, 5)
        if (msg.type !== 'probe') return NEVER
        return msg.since === undefined ? r.have(range(0, 3), 3) : watchReply(s0.s as SimScheduler)
      },
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 1000, rediscoverMs: 20_000, noSourceGraceMs: 60_000, watchMs: 1500 })
    s0.r = replies(w.s, f); s0.s = w.s
    w.s.run(4000)
    w.stop()
    const a = w.links.get(A.nodeId) as ScriptLink
    const watches = a.watches()
    expect(watches).toHaveLength(1)
    expect(drops(w)).toEqual([{ peer: label(A), code, t: watches[0].t + after }])
  })

  // frequent looks (every 10 ms while few sources are known) wake the idle loop often: each wake
  // could send a watch, and one answered at once would spin without the pause; with rare looks
  // (every 250 ms) only the pause's end wakes the loop, and the peer must still be asked
  it.each([
    ['at most every reprobeMs when frequent looks wake its loop: no spin', 40],
    ['about every reprobeMs even when nothing else wakes its loop', 1000],
  ])('re-watches a peer that answers watches at once (no version) %s', (_what, rediscoverMs) => {
    const f = makeFile(6)
    const s0: { r?: ReturnType<typeof replies> } = {}
    // an older peer: holds 0-2, answers every probe at once, never with a version
    const w = world(f, () => [A], {
      [A.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'leech') return r.piece(msg, 5)
        if (msg.type !== 'probe') return NEVER
        return r.have(range(0, 3))
      },
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 1000, rediscoverMs, noSourceGraceMs: 60_000, watchMs: 1500 })
    s0.r = replies(w.s, f)
    const WINDOW = 2000
    w.s.run(WINDOW)
    w.stop()
    const watches = (w.links.get(A.nodeId) as ScriptLink).watches()
    expect(watches.length).toBeGreaterThanOrEqual(WINDOW / REPROBE_MS / 2) // it is still asked, about every REPROBE_MS
    expect(watches.length).toBeLessThanOrEqual(WINDOW / REPROBE_MS + 2)
    // consecutive watches at least reprobeMs apart (+ the 1 ms answer)
    for (let i = 1; i < watches.length; i++) expect(watches[i].t - watches[i - 1].t).toBeGreaterThanOrEqual(REPROBE_MS)
    expect(drops(w)).toEqual([])
  })
})

describe('leechFile: a peer that answers every watch at once with nothing', () => {
  it('is watched at most about every reprobeMs after a few such answers (it spun the loop: 10,000 watches a second); the download completes from an honest source', () => {
    const f = makeFile(6)
    const s0: { r?: ReturnType<typeof replies> } = {}
    let version = 1
    const w = world(f, () => [A, B], {
      // A: holds nothing, answers every watch at once with a new version and an empty bitfield
      [A.nodeId]: (msg) => msg.type !== 'probe' ? NEVER : (s0.r as ReturnType<typeof replies>).have([], version++),
      // B: a slow honest seeder
      [B.nodeId]: (msg) => msg.type === 'leech' ? (s0.r as ReturnType<typeof replies>).piece(msg, 300) : msg.type === 'probe' ? (s0.r as ReturnType<typeof replies>).have(null) : NEVER,
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 5000, rediscoverMs: 1000, noSourceGraceMs: 60_000, watchMs: 1500 })
    s0.r = replies(w.s, f)
    w.s.run(10_000)
    expect(w.events.at(-1)).toMatchObject({ event: 'done' })
    const end = (w.events.at(-1) as { t: number }).t
    const watches = (w.links.get(A.nodeId) as ScriptLink).watches()
    expect(watches.length).toBeLessThanOrEqual(end / REPROBE_MS + 6)
  })
})

describe('leechFile: samples full of holders that never answer', () => {
  it('does not give up while each sample names holders never named before (hundreds of ids registered for nothing): the one that answers comes in a later sample', () => {
    const f = makeFile(6)
    const s0: { r?: ReturnType<typeof replies> } = {}
    let silent = 0
    // the tracker names new silent ids for 5 s (far past the grace), then the seeder
    const w = world(f, (now) => now < 5000 ? Array.from({ length: 4 }, () => addr('e', 10_000 + silent++)).map((p, i) => ({ ...p, nodeId: (0xe000000 + silent * 4 + i).toString(16).padStart(32, '0') })) : [A], {
      [A.nodeId]: (msg) => msg.type === 'leech' ? (s0.r as ReturnType<typeof replies>).piece(msg, 5) : msg.type === 'probe' ? (s0.r as ReturnType<typeof replies>).have(null) : NEVER,
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 1000, rediscoverMs: 250, noSourceGraceMs: 1000, watchMs: 1500 })
    s0.r = replies(w.s, f)
    w.s.run(20_000)
    expect(w.error()).toBeUndefined()
    expect(w.events.at(-1)).toMatchObject({ event: 'done' })
    expect((w.events.at(-1) as { t: number }).t).toBeGreaterThan(5000)
  })

  it('gives up at most a few graces late when the samples name new holders for ever (thousands of dead ids: it waited for each)', () => {
    const f = makeFile(6)
    let n = 0
    const w = world(f, () => Array.from({ length: 4 }, () => ({ ...addr('e', 30_000 + n), nodeId: (0xd000000 + n++).toString(16).padStart(32, '0') })), {}, { queryTimeoutMs: 50, pieceTimeoutMs: 1000, rediscoverMs: 250, noSourceGraceMs: 1000, watchMs: 1500 })
    w.s.run(60_000)
    expect(w.error()).toMatchObject({ code: 'ERR_NO_SOURCES' })
    expect(w.s.now()).toBeLessThan(8_000) // (at most 5 graces past the first: 1 + 5 + 1 s, and the rounds' cadence)
    expect(w.s.now()).toBeGreaterThan(5_000)
  })

  it('still gives up a grace after the samples stop naming new holders', () => {
    const f = makeFile(6)
    const dead = Array.from({ length: 3 }, (_, i) => addr(String(i + 1), 20_000 + i))
    const w = world(f, () => dead, {}, { queryTimeoutMs: 50, pieceTimeoutMs: 1000, rediscoverMs: 250, noSourceGraceMs: 1000, watchMs: 1500 })
    w.s.run(20_000)
    expect(w.error()).toMatchObject({ code: 'ERR_NO_SOURCES' })
    expect(w.s.now()).toBeLessThan(3000)
  })
})

describe('leechFile: discovery rounds', () => {
  it('re-probes only sources that do not answer watches, and probes no more unknown peers than there is room for', () => {
    const f = makeFile(6)
    const s0: { r?: ReturnType<typeof replies> } = {}
    // A: a partial holder that answers watches (0-2, version 3, no news); B: a slow seeder (no
    // version: it is probed every round); C and D: listed too, but two sources fill the room
    const w = world(f, () => [A, B, C, D], {
      [A.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'leech') return r.piece(msg, 5)
        if (msg.type !== 'probe') return NEVER
        return msg.since === undefined ? r.have(range(0, 3), 3) : r.have(range(0, 3), 3, msg.waitMs)
      },
      [B.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'leech') return r.piece(msg, 200)
        return msg.type === 'probe' ? r.have(null) : NEVER
      },
      [C.nodeId]: () => (s0.r as ReturnType<typeof replies>).have(null),
      [D.nodeId]: () => (s0.r as ReturnType<typeof replies>).have(null),
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 5000, rediscoverMs: 100, noSourceGraceMs: 60_000, watchMs: 1500, maxSources: 2, pipeline: 1, sourceSwapAgeMs: Infinity }) // (no swaps: below)
    s0.r = replies(w.s, f)
    w.s.run(5000)
    w.stop()
    expect(w.error()).toBeUndefined()
    const done = w.events.find((e) => e.event === 'done') as { t: number }
    expect(done).toMatchObject({ sha256: f.meta.hash })
    const before = (l: ScriptLink): Logged[] => l.plainProbes().filter((p) => p.t < done.t)
    const a = w.links.get(A.nodeId) as ScriptLink
    const b = w.links.get(B.nodeId) as ScriptLink
    expect(before(a)).toHaveLength(1) // found once; its watches keep it fresh
    expect(a.watches().length).toBeGreaterThan(0)
    expect(before(b).length).toBeGreaterThanOrEqual(3) // a complete holder: probed each round
    for (const x of [C, D]) expect(w.links.get(x.nodeId)?.plainProbes() ?? []).toEqual([])
  })
})

describe('leechFile: source swaps', () => {
  // A and B: partial holders that answer watches. A gives pieces 0-5 fast and then has nothing we
  // lack; B is slow (one piece every 200 ms) and holds everything. C and D: complete holders,
  // listed too. Two sources fill the room.
  const scene = (swapAgeMs: number): { w: World, f: TestFile } => {
    const f = makeFile(24)
    const s0: { r?: ReturnType<typeof replies> } = {}
    const partial = (holds: number[], pieceMs: number): Script => (msg) => {
      const r = s0.r as ReturnType<typeof replies>
      if (msg.type === 'leech') return r.piece(msg, pieceMs)
      if (msg.type !== 'probe') return NEVER
      return msg.since === undefined ? r.have(holds, holds.length) : r.have(holds, holds.length, msg.waitMs)
    }
    const complete: Script = (msg) => {
      const r = s0.r as ReturnType<typeof replies>
      if (msg.type === 'leech') return r.piece(msg, 5)
      return msg.type === 'probe' ? r.have(null) : NEVER
    }
    const w = world(f, () => [A, B, C, D], {
      [A.nodeId]: partial(range(0, 6), 5),
      [B.nodeId]: partial(range(0, 24), 200),
      [C.nodeId]: complete,
      [D.nodeId]: complete,
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 5000, rediscoverMs: 100, noSourceGraceMs: 60_000, watchMs: 1500, maxSources: 2, pipeline: 1, sourceSwapAgeMs: swapAgeMs })
    s0.r = replies(w.s, f)
    w.s.run(20_000)
    w.stop()
    return { w, f }
  }

  it('with its sources full, swaps out the one that gave nothing in a round (once it has used it swapAgeMs) for a cluster member it does not use', () => {
    const { w, f } = scene(300)
    expect(w.error()).toBeUndefined()
    const done = w.events.find((e) => e.event === 'done') as { t: number }
    expect(done).toMatchObject({ sha256: f.meta.hash })
    const a = w.links.get(A.nodeId) as ScriptLink
    // A gave its six pieces in its first round and nothing after: swapped out at the first round
    // past swapAgeMs, for C or D (probed then, not before)
    expect(piecesFrom(w, A).map((p) => p.index).sort((x, y) => x - y)).toEqual(range(0, 6))
    const newcomer = [C, D].map((x) => w.links.get(x.nodeId)).find((l) => l !== undefined && l.plainProbes().length > 0) as ScriptLink
    expect(newcomer).toBeDefined()
    const firstProbe = newcomer.plainProbes()[0].t
    expect(firstProbe).toBeGreaterThanOrEqual(300)
    expect(firstProbe).toBeLessThan(300 + 2 * 100 + 50)
    // A is no longer watched once swapped out (its last watch went out before the swap)
    expect(a.watches().every((x) => x.t < firstProbe)).toBe(true)
    // the newcomer serves what is left, far sooner than B alone would (18 pieces at 200 ms each)
    expect(piecesFrom(w, newcomer.peer).length).toBeGreaterThan(0)
    expect(done.t).toBeLessThan(18 * 200)
    // a swap is no failure (nobody is reported dropped), and the peer swapped out is not taken
    // back at the next rounds (it is left alone for 5 rounds)
    expect(drops(w)).toEqual([])
    expect(a.plainProbes().filter((x) => x.t > firstProbe && x.t < firstProbe + 4 * 100)).toEqual([])
  })

  it('a swap frees a place even when askers keep the sources above the maximum: the next member found takes it', () => {
    // one source at most from discovery (A), one more from an asker (B): a swap of A must still
    // let C in, though the sources are not below the maximum after it
    const f = makeFile(24)
    const s0: { r?: ReturnType<typeof replies> } = {}
    const askers = new Subject<PeerAddress>()
    const r = (): ReturnType<typeof replies> => s0.r as ReturnType<typeof replies>
    const w = world(f, () => [A, C], {
      [A.nodeId]: (msg) => msg.type === 'leech' ? r().piece(msg, 5) : msg.type !== 'probe' ? NEVER : msg.since === undefined ? r().have(range(0, 6), 6) : r().have(range(0, 6), 6, msg.waitMs),
      [B.nodeId]: (msg) => msg.type === 'leech' ? r().piece(msg, 200) : msg.type !== 'probe' ? NEVER : msg.since === undefined ? r().have(range(0, 24), 24) : r().have(range(0, 24), 24, msg.waitMs),
      [C.nodeId]: (msg) => msg.type === 'leech' ? r().piece(msg, 5) : msg.type === 'probe' ? r().have(null) : NEVER,
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 5000, rediscoverMs: 100, noSourceGraceMs: 60_000, watchMs: 1500, maxSources: 1, pipeline: 1, sourceSwapAgeMs: 300 }, { askers })
    s0.r = replies(w.s, f)
    const B_AT = 250
    w.s.schedule(() => askers.next(B), B_AT)
    w.s.run(20_000)
    w.stop()
    const done = w.events.find((e) => e.event === 'done') as { t: number }
    expect(done).toMatchObject({ sha256: f.meta.hash })
    expect(piecesFrom(w, B).length).toBeGreaterThan(0) // the asker became a source
    // C came in at the swap of A (A is swappable from 300 ms), not at a later swap of B (B is
    // swappable only from B_AT + 300 ms, when it would leave the sources below the maximum)
    const fromC = piecesFrom(w, C)
    expect(fromC.length).toBeGreaterThan(0)
    expect(fromC[0].t).toBeLessThan(B_AT + 300)
  })

  it('never swaps with an infinite swap age: the room stays with the sources it has', () => {
    const { w, f } = scene(Infinity)
    const done = w.events.find((e) => e.event === 'done') as { t: number }
    expect(done).toMatchObject({ sha256: f.meta.hash })
    for (const x of [C, D]) expect(w.links.get(x.nodeId)?.plainProbes() ?? []).toEqual([])
    expect(done.t).toBeGreaterThanOrEqual(18 * 200) // B alone brought the rest
  })
})

describe('leechFile: askers', () => {

  it('probes a peer that asked about the file (never listed by the tracker) and fetches pieces from it', () => {
    const f = makeFile(4)
    const s0: { r?: ReturnType<typeof replies> } = {}
    const askers = new Subject<PeerAddress>()
    const w = world(f, () => [], {
      [D.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'leech') return r.piece(msg, 5)
        if (msg.type === 'probe') return r.have(null) // a seeder
        return NEVER
      },
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 1000, rediscoverMs: 400, noSourceGraceMs: 60_000 }, { askers })
    s0.r = replies(w.s, f)
    w.s.schedule(() => { askers.next({ nodeId: SELF.nodeId, host: '127.0.0.1', port: SELF.port }); askers.next(D) }, 200)
    w.s.run(5000)
    w.stop()
    expect(w.error()).toBeUndefined()
    const d = w.links.get(D.nodeId) as ScriptLink
    expect(d.plainProbes()[0]).toMatchObject({ t: 200, msg: { type: 'probe', fileId: f.meta.hash, from: SELF } })
    expect(w.links.has(SELF.nodeId)).toBe(false) // itself: never asked
    expect(piecesFrom(w, D).map((p) => p.index).sort()).toEqual(range(0, 4))
    expect(w.events.at(-1)).toMatchObject({ event: 'done', sha256: f.meta.hash })
    expect(w.sink().data.equals(f.content)).toBe(true)
  })
})

describe('leechFile: a node that takes a new id mid-download', () => {
  it('asks under its new id from then on and never takes itself, named under it, for a source', () => {
    const f = makeFile(4)
    const s0: { r?: ReturnType<typeof replies> } = {}
    const askers = new Subject<PeerAddress>()
    const NEW = 'e'.repeat(32)
    let self = SELF.nodeId
    const w = world(f, (now) => now < 300 ? [] : [{ nodeId: NEW, host: '127.0.0.1', port: SELF.port }, D], {
      [D.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'leech') return r.piece(msg, 5)
        if (msg.type === 'probe') return r.have(null)
        return NEVER
      },
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 1000, rediscoverMs: 400, noSourceGraceMs: 60_000 }, { askers, selfId: () => self })
    s0.r = replies(w.s, f)
    w.s.schedule(() => { self = NEW }, 100)
    w.s.schedule(() => { askers.next({ nodeId: NEW, host: '127.0.0.1', port: SELF.port }) }, 200)
    w.s.run(5000)
    w.stop()
    expect(w.error()).toBeUndefined()
    expect(w.links.has(NEW)).toBe(false) // itself under its new id: never asked
    const d = w.links.get(D.nodeId) as ScriptLink
    expect(d.log.length).toBeGreaterThan(0)
    for (const l of d.log) if (l.msg.type === 'probe' || l.msg.type === 'find_cluster') expect(l.msg.from).toEqual({ nodeId: NEW, port: SELF.port })
    expect(w.events.at(-1)).toMatchObject({ event: 'done', sha256: f.meta.hash })
  })
})

describe('leechFile: stalls', () => {
  it('a lone source that drops its connection once (a restart, an idle connection closed) is asked again after its cool-down: the download does not give up meanwhile', () => {
    const f = makeFile(8)
    const s0: { r?: ReturnType<typeof replies> } = {}
    let dropped = 0
    const w = world(f, () => [A], {
      [A.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'probe') return r.have(null)
        if (msg.type !== 'leech') return NEVER
        if (dropped++ === 0) return throwError(() => new ConnectionClosedError('127.0.0.1:1', 'closed by the peer'))
        return r.piece(msg, 5)
      },
    }, { queryTimeoutMs: 50, rediscoverMs: 1000, noSourceGraceMs: 3000 }) // (the defaults)
    s0.r = replies(w.s, f)
    w.s.run(60_000)
    w.stop()
    expect(w.error()).toBeUndefined()
    expect(w.events.find((e) => e.event === 'peer-dropped')).toBeDefined()
    expect(w.events.at(-1)).toMatchObject({ event: 'done', sha256: f.meta.hash })
    expect(w.sink().data.equals(f.content)).toBe(true)
  })

  it('still gives up once the cool-down is over and the dropped source is gone (probes unanswered): the grace then runs', () => {
    const f = makeFile(8)
    const s0: { r?: ReturnType<typeof replies> } = {}
    let gone = false
    const w = world(f, () => [A], {
      [A.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (gone) return NEVER
        if (msg.type === 'probe') return r.have(null)
        if (msg.type !== 'leech') return NEVER
        gone = true
        return throwError(() => new ConnectionClosedError('127.0.0.1:1', 'closed by the peer'))
      },
    }, { queryTimeoutMs: 50, rediscoverMs: 1000, noSourceGraceMs: 3000 })
    s0.r = replies(w.s, f)
    w.s.run(60_000)
    w.stop()
    expect(w.error()).toMatchObject({ code: 'ERR_NO_SOURCES' })
  })

  it('drops a source with a measured rate soon after it stops answering (max(STALL_MIN_MS, 10x its pace), not pieceTimeoutMs), and its piece comes from another source', () => {
    const f = makeFile(60)
    const s0: { r?: ReturnType<typeof replies> } = {}
    const SILENT_FROM = 150
    // A: a fast seeder (20 ms a piece) that goes silent at SILENT_FROM; B: a slower seeder
    const w = world(f, () => [A, B], {
      [A.nodeId]: (msg, now) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'probe') return r.have(null)
        if (msg.type !== 'leech') return NEVER
        return now >= SILENT_FROM ? NEVER : r.piece(msg, 20)
      },
      [B.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'probe') return r.have(null)
        return msg.type === 'leech' ? r.piece(msg, 60) : NEVER
      },
    }, { queryTimeoutMs: 50, rediscoverMs: 1000, noSourceGraceMs: 60_000 }) // pieceTimeoutMs: the default 15 s
    s0.r = replies(w.s, f)
    w.s.run(30_000)
    w.stop()
    expect(w.error()).toBeUndefined()
    const a = w.links.get(A.nodeId) as ScriptLink
    const stuck = a.pieceAsks().filter((p) => p.t >= SILENT_FROM)
    expect(stuck.length).toBeGreaterThan(0)
    expect(piecesFrom(w, A).filter((p) => p.t < SILENT_FROM).length).toBeGreaterThan(5) // its rate was measured
    const [drop] = drops(w)
    expect(drop).toMatchObject({ peer: label(A), code: 'ERR_PEER_TIMEOUT' })
    expect(drops(w)).toHaveLength(1)
    const waited = drop.t - stuck[0].t
    expect(waited).toBeGreaterThanOrEqual(STALL_MIN_MS)
    expect(waited).toBeLessThan(3000) // far below the 15 s piece timeout
    // the pieces A held are fetched from B, and the file is done
    for (const p of stuck) expect(piecesFrom(w, B).map((q) => q.index)).toContain(p.index)
    expect(w.events.at(-1)).toMatchObject({ event: 'done', sha256: f.meta.hash })
    expect(w.sink().data.equals(f.content)).toBe(true)
  })

  it('gives a source whose rate is unknown the full pieceTimeoutMs', () => {
    const f = makeFile(10)
    const s0: { r?: ReturnType<typeof replies> } = {}
    // A delivers pieces 0-8 (and holds its watches); only C holds piece 9, and never sends it
    const w = world(f, () => [A, C], {
      [A.nodeId]: (msg) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'leech') return r.piece(msg, 20)
        if (msg.type !== 'probe') return NEVER
        return msg.since === undefined ? r.have(range(0, 9), 9) : NEVER
      },
      [C.nodeId]: (msg) => msg.type === 'probe' ? (s0.r as ReturnType<typeof replies>).have(null) : NEVER,
    }, { queryTimeoutMs: 50, pieceTimeoutMs: 3000, rediscoverMs: 20_000, noSourceGraceMs: 60_000, watchMs: 20_000 })
    s0.r = replies(w.s, f)
    w.s.run(8000)
    w.stop()
    const c = w.links.get(C.nodeId) as ScriptLink
    expect(c.pieceAsks().map((p) => p.index)).toEqual([9])
    expect(piecesFrom(w, A).length).toBe(9) // A's rate is known, C's never was
    expect(drops(w)).toEqual([{ peer: label(C), code: 'ERR_PEER_TIMEOUT', t: c.pieceAsks()[0].t + 3000 }])
  })
})

describe('leechFile: endgame', () => {
  // Seeders at 10 ms a piece, except that the N-th piece request (the last piece to go out) and
  // every request after it take SLOW ms (under STALL_MIN_MS: not a stall); C: a seeder whose probes
  // go unanswered until C_FROM, so a later look finds it once no piece is missing.
  // (the picker allows at most 2 copies of a piece in flight: with one delivering seeder there is
  // room for C's copy, so only the rule keeps it from C)
  const N = 30
  const C_FROM = 250
  const SLOW = 450
  function endgame (seeders: PeerAddress[]): { w: World, f: TestFile, done: { t: number } } {
    const f = makeFile(N)
    const s0: { r?: ReturnType<typeof replies> } = {}
    let asks = 0
    const seeder = (msg: Req): Observable<Frame> => {
      const r = s0.r as ReturnType<typeof replies>
      if (msg.type === 'probe') return r.have(null)
      return msg.type === 'leech' ? r.piece(msg, ++asks >= N ? SLOW : 10) : NEVER
    }
    const w = world(f, () => [...seeders, C], {
      ...Object.fromEntries(seeders.map((p) => [p.nodeId, seeder])),
      [C.nodeId]: (msg, now) => {
        const r = s0.r as ReturnType<typeof replies>
        if (msg.type === 'probe') return now >= C_FROM ? r.have(null) : NEVER
        return msg.type === 'leech' ? r.piece(msg, 10) : NEVER
      },
    }, { queryTimeoutMs: 50, rediscoverMs: 400, noSourceGraceMs: 60_000 })
    s0.r = replies(w.s, f)
    w.s.run(20_000)
    w.stop()
    expect(w.error()).toBeUndefined()
    const done = w.events.find((e) => e.event === 'done') as { t: number }
    expect(done).toMatchObject({ sha256: f.meta.hash })
    expect(drops(w)).toEqual([])
    return { w, f, done }
  }

  it('gives no copy to an idle source that never delivered (found once no piece is missing)', () => {
    const { w, done } = endgame([A])
    const c = w.links.get(C.nodeId) as ScriptLink
    // C was found (answered a probe) while the last piece was still out, and never asked for a copy
    const foundAt = c.plainProbes().find((l) => l.t >= C_FROM)?.t as number
    expect(foundAt).toBeLessThan(done.t - 100)
    expect(c.pieceAsks()).toEqual([])
    expect(piecesFrom(w, A)).toHaveLength(N)
  })

  it('gives a copy to an idle source that delivered', () => {
    const { w } = endgame([A, B])
    const a = w.links.get(A.nodeId) as ScriptLink; const b = w.links.get(B.nodeId) as ScriptLink
    // some piece was asked of both A and B (a copy), and C got none
    const ofA = new Set(a.pieceAsks().map((p) => p.index))
    expect(b.pieceAsks().some((p) => ofA.has(p.index))).toBe(true)
    expect((w.links.get(C.nodeId) as ScriptLink).pieceAsks()).toEqual([])
  })
})
