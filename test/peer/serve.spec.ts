import { TestScheduler } from 'rxjs/testing'
import { ClusterTable } from '../../src/peer/clusterTable'
import { setBit } from '../../src/peer/picker'
import { PieceLog } from '../../src/peer/pieceLog'
import { KICK_RETRY_MS, MAX_BUSY_RETRY_MS, SEEDED_LOCK_MS, WATCH_NOTIFY } from '../../src/limits'
import { busyWaitFor, busyWaitMs, SentCounts, servedShare, serveRequest, serveWatch, WatchKicker, type Outgoing, type ServeContext, type ServedFile } from '../../src/peer/serve'
import type { FileMetaData, PeerAddress, Probe } from '../../src/protocol/messages'

const H = 'ab'.repeat(32)
const OTHER = 'cd'.repeat(32)
const NODE = '00112233445566778899aabbccddeeff'
const meta: FileMetaData = { name: 'f.bin', hash: H, size: 10 * 4096, blockSize: 4096, pieces: 10 }

const bits = (...pieces: number[]): Uint8Array => {
  const b = new Uint8Array(2)
  for (const i of pieces) setBit(b, i)
  return b
}

/**
 * A download in progress holding `held` (stored in that order), as Lp2pNode serves it; with
 * `noHashes`, it has no verified hash list until `gotHashes()`.
 */
function partial (held: number[], noHashes = false): { ctx: ServeContext, store: (i: number) => void, asked: Array<[string, PeerAddress]>, file: ServedFile, gotHashes: () => void } {
  const have = new Uint8Array(2)
  const log = new PieceLog(meta.pieces)
  let hashes: Buffer | null = noHashes ? null : Buffer.alloc(320)
  // as the node does: the list first, then the log (which wakes the watches that need it)
  const gotHashes = (): void => { hashes = Buffer.alloc(320); log.gotHashes() }
  // as the node does: the bit first, then the log (which wakes the watches that read the bits)
  const store = (i: number): void => { setBit(have, i); log.add(i) }
  for (const i of held) store(i)
  const file: ServedFile = { meta, source: () => ({ size: 0, view: () => [] }), checkSize: () => {}, pieceHashes: () => hashes, have: () => have, log }
  const asked: Array<[string, PeerAddress]> = []
  const ctx: ServeContext = { file: (id) => id === H ? file : undefined, cluster: new ClusterTable(), onAsker: (id, p) => asked.push([id, p]) }
  return { ctx, store, asked, file, gotHashes }
}

const watch = (over: Partial<Probe> = {}): Probe => ({ type: 'probe', req: 9, fileId: H, since: 0, lacks: bits(7), waitMs: 20, ...over })
const have = (held: number[], version: number, hashes = true): Outgoing => ({ msg: { type: 'have', req: 9, fileId: H, totalPieces: 10, bitfield: bits(...held), version, ...(hashes ? { hashes } : {}) } })

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

describe('serveWatch', () => {
  it('answers at once when a lacked piece was stored after `since`', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx } = partial([2, 7, 4])
      // the asker last saw version 1 (piece 2): piece 7 came after, and it lacks it
      expectObservable(serveWatch(watch({ since: 1 }), ctx, ts)).toBe('(a|)', { a: have([2, 4, 7], 3) })
    })
  })

  it('holds a watch with no news, and answers when a lacked piece is stored', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx, store } = partial([2, 7])
      // piece 7 is old news (before version 2): the watch waits
      ts.schedule(() => store(5), 5)
      expectObservable(serveWatch(watch({ since: 2, lacks: bits(5, 7, 9) }), ctx, ts)).toBe('-----(a|)', { a: have([2, 5, 7], 3) })
    })
  })

  it('is not answered by a piece the asker does not lack; answered after waitMs then', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx, store } = partial([2])
      ts.schedule(() => store(3), 5)
      expectObservable(serveWatch(watch({ since: 1, lacks: bits(7), waitMs: 20 }), ctx, ts)).toBe('20ms (a|)', { a: have([2, 3], 2) })
    })
  })

  it('with no news at all, answers after waitMs with what is held', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx } = partial([1, 2])
      expectObservable(serveWatch(watch({ since: 2, waitMs: 30 }), ctx, ts)).toBe('30ms (a|)', { a: have([1, 2], 2) })
    })
  })

  it('a watch that needs hashes is answered as soon as the holder gets the list (even holding no piece), or at once if it has it', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx, gotHashes } = partial([], true)
      ts.schedule(() => gotHashes(), 4)
      expectObservable(serveWatch(watch({ needHashes: true, waitMs: 20 }), ctx, ts)).toBe('----(a|)', { a: have([], 0) })
      // an asker that has the list is not told about it: it waits for a piece (or waitMs)
      expectObservable(serveWatch(watch({ waitMs: 20 }), ctx, ts)).toBe('20ms (a|)', { a: have([], 0) })
    })
    const ts2 = setup()
    ts2.run(({ expectObservable }) => {
      const { ctx } = partial([])
      expectObservable(serveWatch(watch({ needHashes: true, waitMs: 20 }), ctx, ts2)).toBe('(a|)', { a: have([], 0) })
    })
  })

  it('a holder without the list says nothing of hashes, and gives none (NOT_FOUND)', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx } = partial([], true)
      expectObservable(serveWatch(watch({ needHashes: true, waitMs: 20 }), ctx, ts)).toBe('20ms (a|)', { a: have([], 0, false) })
    })
    const { ctx } = partial([], true)
    expect(serveRequest({ type: 'get_hashes', req: 3, fileId: H, from: 0, count: 10 }, ctx).msg).toEqual(expect.objectContaining({ type: 'error', code: 'NOT_FOUND' }))
  })

  it('a busy uplink declines a hash list with BUSY (the asker gets it elsewhere); an idle one gives it', () => {
    const { ctx } = partial([1])
    let busy = true
    const c: ServeContext = { ...ctx, busy: () => busy }
    const ask = { type: 'get_hashes' as const, req: 3, fileId: H, from: 0, count: 10 }
    expect(serveRequest(ask, c).msg).toEqual(expect.objectContaining({ type: 'error', code: 'BUSY' }))
    busy = false
    expect(serveRequest(ask, c)).toEqual(expect.objectContaining({ msg: { type: 'hashes', req: 3, fileId: H, from: 0, count: 10 }, payload: expect.objectContaining({ offset: 0, length: 320 }) }))
  })

  it('a BUSY from a capped uplink says when to ask again: BUSY_RETRY_PIECES of its piece times; without a cap it says nothing', () => {
    const { ctx } = partial([1, 2])
    const leech = { type: 'leech' as const, req: 4, hash: H, size: meta.size, offset: 4096, blockSize: 4096, pieces: 10 }
    const hashes = { type: 'get_hashes' as const, req: 3, fileId: H, from: 0, count: 10 }
    const busy: ServeContext = { ...ctx, busy: () => true }
    // 4 KiB pieces at 1 MB/s: 4.096 ms each, 0.75 of them: 3.072 → 4 ms (whole ms, rounded up)
    for (const m of [leech, hashes]) {
      expect(serveRequest(m, busy).msg).not.toHaveProperty('retryMs')
      expect(serveRequest(m, { ...busy, uploadRate: 1e6 }).msg).toEqual({ type: 'error', req: m.req, code: 'BUSY', message: expect.any(String), retryMs: 4 })
    }
    expect(busyWaitMs(256 * 1024, 20e6)).toBe(10) // where BUSY_RETRY_MS (20 ms) was tuned: below it
    expect(busyWaitMs(4 * 1024 * 1024, 125e6)).toBe(26)
    expect(busyWaitMs(8 * 1024 * 1024, 1000)).toBe(MAX_BUSY_RETRY_MS) // bounded
    expect(busyWaitMs(4096, undefined)).toBeUndefined()
    expect(busyWaitMs(4096, Infinity)).toBeUndefined()
    expect(busyWaitMs(0, 1e6)).toBeUndefined()
    // in piece times of the file asked about (the asker's block size only for a file not held here)
    const capped = { ...ctx, uploadRate: 1e6 }
    expect(busyWaitFor({ ...leech, blockSize: 8192 }, capped)).toBe(4)
    expect(busyWaitFor({ ...leech, hash: 'ee'.repeat(32), blockSize: 8192 }, capped)).toBe(7)
    expect(busyWaitFor(hashes, capped)).toBe(4)
    expect(busyWaitFor({ type: 'probe', req: 5, fileId: H }, capped)).toBeUndefined()
  })

  it('a busy uplink lets a piece through its longer queue only for a starved asker or a piece that never went out from here', () => {
    const { ctx, file } = partial([1, 2])
    // the uplink: full for an ordinary request, with room left for those that may pass it
    const asked: boolean[] = []
    const c: ServeContext = { ...ctx, busy: (passes) => { asked.push(passes); return !passes } }
    const leech = { type: 'leech' as const, req: 4, hash: H, size: meta.size, offset: 4096, blockSize: 4096, pieces: 10 }
    expect(serveRequest(leech, c).msg).toEqual(expect.objectContaining({ type: 'error', code: 'BUSY' }))
    expect(serveRequest({ ...leech, starved: false }, c).msg).toEqual(expect.objectContaining({ type: 'error', code: 'BUSY' }))
    expect(serveRequest({ ...leech, starved: true }, c).msg).toEqual(expect.objectContaining({ type: 'piece', offset: 4096 }))
    // a piece never sent from here passes too; once sent, it no longer does
    file.sent = new SentCounts(10)
    expect(serveRequest({ ...leech, offset: 8192 }, c).msg).toEqual(expect.objectContaining({ type: 'piece', offset: 8192 }))
    expect(serveRequest({ ...leech, offset: 8192 }, c).msg).toEqual(expect.objectContaining({ type: 'error', code: 'BUSY' }))
    expect(asked).toEqual([false, false, true, true, false])
  })

  it('unsubscribing a held watch stops it: a later lacked piece is not answered', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx, store } = partial([])
      ts.schedule(() => store(7), 8)
      expectObservable(serveWatch(watch({ waitMs: 20 }), ctx, ts), '^---!').toBe('----')
    })
  })

  it('a complete holder answers at once (no bitfield), as does a holder without a log or an unknown file', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const complete: ServedFile = { meta, source: () => ({ size: 0, view: () => [] }), checkSize: () => {}, pieceHashes: () => null, have: () => null }
      const ctx: ServeContext = { file: (id) => id === H ? complete : undefined, cluster: new ClusterTable() }
      expectObservable(serveWatch(watch({ waitMs: 1000 }), ctx, ts)).toBe('(a|)', { a: { msg: { type: 'have', req: 9, fileId: H, totalPieces: 10 } } })
      const noLog: ServedFile = { ...complete, have: () => bits(1) }
      expectObservable(serveWatch(watch({ waitMs: 1000 }), { ...ctx, file: () => noLog }, ts)).toBe('(a|)', { a: { msg: { type: 'have', req: 9, fileId: H, totalPieces: 10, bitfield: bits(1) } } })
      expectObservable(serveWatch(watch({ fileId: OTHER, waitMs: 1000 }), ctx, ts)).toBe('(a|)', { a: { msg: expect.objectContaining({ type: 'error', code: 'NOT_FOUND' }) } })
    })
  })

  it('a plain probe (no `since`) is answered at once, with the holder\'s version', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx } = partial([3])
      expectObservable(serveWatch({ type: 'probe', req: 9, fileId: H }, ctx, ts)).toBe('(a|)', { a: have([3], 1) })
    })
  })

  it.each([
    ['one byte short', new Uint8Array(1)],
    ['one byte long', new Uint8Array(3)],
    ['empty', new Uint8Array(0)],
  ])('a `lacks` that does not match the file\'s pieces (%s) is a BAD_REQUEST, at once', (_, lacks) => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx } = partial([])
      expectObservable(serveWatch(watch({ lacks }), ctx, ts)).toBe('(a|)', { a: { msg: expect.objectContaining({ type: 'error', req: 9, code: 'BAD_REQUEST' }) } })
    })
  })

  it('`from` reports the asker once, at arrival, at the address the connection saw', () => {
    const ts = setup()
    ts.run(({ expectObservable, flush }) => {
      const { ctx, store, asked } = partial([])
      ts.schedule(() => store(7), 5)
      const out = serveWatch(watch({ from: { nodeId: NODE, port: 7100 } }), ctx, ts, { host: '10.0.0.2' })
      expect(asked).toEqual([[H, { nodeId: NODE, host: '10.0.0.2', port: 7100 }]])
      expectObservable(out).toBe('-----(a|)', { a: have([7], 1) })
      flush()
      // answering the watch does not report the asker again
      expect(asked).toHaveLength(1)
    })
  })

  it('`from` is ignored without a remote address', () => {
    const ts = setup()
    ts.run(() => {
      const { ctx, asked } = partial([])
      serveWatch(watch({ from: { nodeId: NODE, port: 7100 } }), ctx, ts)
      expect(asked).toEqual([])
    })
  })
})

describe('a seeder sends every piece once before any twice, for SEEDED_LOCK_MS after each send', () => {
  it('SentCounts: a piece sent is locked while some never went; after the lock, only for an asker that knows no other holder', () => {
    let now = 1000
    const s = new SentCounts(3, () => now, 500)
    expect(s.sentBits()).toEqual(new Uint8Array([0]))
    expect(s.take(0)).toBe(true)
    expect(s.unsent).toBe(2)
    // locked: whatever the asker knows
    now += 500
    expect(s.take(0)).toBe(false)
    expect(s.take(0, 1)).toBe(false)
    expect(s.sentBits()).toEqual(new Uint8Array([0x80]))
    // past the lock: an asker with no other holder (copies ≤ 1: only us) gets it, one that knows
    // another (or does not say) does not; the second send locks it again
    now += 1
    expect(s.sentBits()).toEqual(new Uint8Array([0]))
    expect(s.take(0, 2)).toBe(false)
    expect(s.take(0)).toBe(false)
    expect(s.take(0, 1)).toBe(true)
    expect(s.counts[0]).toBe(2)
    expect(s.take(0, 0)).toBe(false)
    expect(s.sentBits()).toEqual(new Uint8Array([0x80]))
    // once every piece went out, any piece goes, and nothing is locked
    expect(s.take(1)).toBe(true)
    expect(s.take(2)).toBe(true)
    expect(s.sentBits()).toBeNull()
    expect(s.take(0, 5)).toBe(true)
  })

  it('SentCounts.note (a holder still downloading sends what it has) counts and locks from that send too', () => {
    let now = 0
    const s = new SentCounts(2, () => now, 500)
    s.note(1)
    expect(s.unsent).toBe(1)
    expect(s.fresh(1)).toBe(false)
    expect(s.sentBits()).toEqual(new Uint8Array([0x40]))
    expect(s.take(1, 1)).toBe(false)
    now = 501
    expect(s.take(1, 1)).toBe(true)
  })

  it('serveRequest: a seeder declines a piece it already sent (SEEDED) and serves it after the lock to an asker whose `copies` says only the seeder holds it', () => {
    let now = 0
    const file: ServedFile = { meta, source: () => ({ size: 0, view: () => [] }), checkSize: () => {}, pieceHashes: () => null, have: () => null, sent: new SentCounts(meta.pieces, () => now) }
    const ctx: ServeContext = { file: (id) => id === H ? file : undefined, cluster: new ClusterTable() }
    const leech = { type: 'leech' as const, req: 4, hash: H, size: meta.size, offset: 8192, blockSize: 4096, pieces: 10 }
    expect(serveRequest(leech, ctx).msg).toEqual(expect.objectContaining({ type: 'piece', offset: 8192 }))
    expect(serveRequest({ ...leech, copies: 1 }, ctx).msg).toEqual(expect.objectContaining({ type: 'error', code: 'SEEDED' }))
    // its probe answer says which pieces are locked (askers fetch those from peers)
    expect(serveRequest({ type: 'probe', req: 5, fileId: H }, ctx).msg).toEqual({ type: 'have', req: 5, fileId: H, totalPieces: 10, sent: bits(2) })
    now = SEEDED_LOCK_MS + 1
    expect(serveRequest({ type: 'probe', req: 5, fileId: H }, ctx).msg).toEqual({ type: 'have', req: 5, fileId: H, totalPieces: 10, sent: bits() })
    expect(serveRequest({ ...leech, copies: 3 }, ctx).msg).toEqual(expect.objectContaining({ type: 'error', code: 'SEEDED' }))
    expect(serveRequest({ ...leech, copies: 1 }, ctx).msg).toEqual(expect.objectContaining({ type: 'piece', offset: 8192 }))
  })
})

describe('WatchKicker (an idle uplink tells held watches what it has)', () => {
  // a holder of pieces 2 and 4 (version 2) and five watches with no news (since 2), waiting 50 ms
  const held = (): { ctx: ServeContext, file: ServedFile, store: (i: number) => void } => partial([2, 4])
  const wait = { since: 2, waitMs: 50 }

  it('tells at most WATCH_NOTIFY watches that lack a held piece, those lacking the most first, and again every KICK_RETRY_MS while idle', () => {
    expect([WATCH_NOTIFY, KICK_RETRY_MS]).toEqual([2, 5]) // the marbles below assume them
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx, file } = held()
      const kicker = new WatchKicker(() => [file], () => true, ts)
      ts.schedule(() => kicker.poke(), 3)
      const a = { a: have([2, 4], 2) }
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(4, 5, 6, 8) }), ctx, ts)).toBe('---(a|)', a) // lacks 4 pieces
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(2, 4, 9) }), ctx, ts)).toBe('---(a|)', a) // 3
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(2) }), ctx, ts)).toBe('--------(a|)', a) // 1: the retry
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(4) }), ctx, ts)).toBe('--------(a|)', a)
      // lacks nothing held here: never told, answered when its wait is over
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(7) }), ctx, ts)).toBe('50ms (a|)', a)
      ts.schedule(() => expect(kicker.told).toBe(4), 40)
    })
  })

  it('tells nobody while the uplink is busy; a poke once it is idle does', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx, file } = held()
      let idle = false
      const kicker = new WatchKicker(() => [file], () => idle, ts)
      ts.schedule(() => kicker.poke(), 2)
      ts.schedule(() => { idle = true; kicker.poke() }, 10)
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(2) }), ctx, ts)).toBe('----------(a|)', { a: have([2, 4], 2) })
    })
  })

  it('a retry finds the uplink busy again: the loop ends; close() cancels a pending retry', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { ctx, file } = held()
      let idle = true
      const kicker = new WatchKicker(() => [file], () => idle, ts)
      const closed = new WatchKicker(() => [file], () => true, ts)
      ts.schedule(() => kicker.poke(), 1)
      ts.schedule(() => { idle = false }, 2) // busy again before the retry at 6
      ts.schedule(() => { closed.poke(); closed.close() }, 20)
      const a = { a: have([2, 4], 2) }
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(2, 4) }), ctx, ts)).toBe('-(a|)', a)
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(2, 4) }), ctx, ts)).toBe('-(a|)', a)
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(2, 4) }), ctx, ts)).toBe('20ms (a|)', a) // told by `closed`'s first kick
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(2) }), ctx, ts)).toBe('20ms (a|)', a)
      expectObservable(serveWatch(watch({ ...wait, lacks: bits(4) }), ctx, ts)).toBe('50ms (a|)', a) // no retry after close
    })
  })
})

describe('servedShare: a shared file as an initial seeder serves it (Lp2pNode and the simulator both)', () => {
  it('the whole file, its hash list when known, and every piece once before any twice on the clock given', () => {
    const meta = { name: 's.bin', hash: 'cd'.repeat(32), size: 4 * 4096, blockSize: 4096, pieces: 4 }
    const file = { size: meta.size, view: () => [] }
    let hashes: Buffer | null = null
    let now = 0
    let checks = 0
    const f = servedShare(meta, () => file, () => hashes, () => { checks++ }, () => now)
    expect(f.have()).toBeNull()
    expect(f.source()).toBe(file)
    expect(f.pieceHashes()).toBeNull()
    hashes = Buffer.alloc(4 * 32)
    expect(f.pieceHashes()).toBe(hashes)
    f.checkSize()
    expect(checks).toBe(1)
    expect(f.sent?.take(2)).toBe(true)
    expect(f.sent?.take(2, 1)).toBe(false) // held back: other pieces never went out
    now = 10_000
    expect(f.sent?.take(2, 1)).toBe(true) // the hold is over (on the clock given), and the asker knows no other holder
  })
})

describe('serveRequest find_cluster', () => {
  it('adds an asker to the cluster of a file served here, not of any id it names (askers filled the table with junk rows)', () => {
    const { ctx, asked } = partial([2])
    const from = { nodeId: 'c'.repeat(32), port: 7000 }
    const other = 'e'.repeat(64)
    expect(serveRequest({ type: 'find_cluster', req: 1, fileId: other, from }, ctx, { host: '10.0.0.3' })).toEqual({ msg: { type: 'cluster', req: 1, fileId: other, peers: [] } })
    expect(ctx.cluster.size).toBe(0)
    expect(asked).toEqual([])
    serveRequest({ type: 'find_cluster', req: 2, fileId: H, from }, ctx, { host: '10.0.0.3' })
    expect(ctx.cluster.peers(H)).toEqual([{ nodeId: from.nodeId, host: '10.0.0.3', port: 7000 }])
    expect(asked).toEqual([[H, { nodeId: from.nodeId, host: '10.0.0.3', port: 7000 }]])
  })
})
