import net from 'node:net'
import { asyncScheduler, firstValueFrom, NEVER, Observable, timeout, VirtualTimeScheduler } from 'rxjs'
import { FRESH_QUEUE_FACTOR, RAREST_FIRST_AGE_MS } from '../../src/limits'
import { TokenBucket } from '../../streams/rateLimit'
import { PeerConnection, type WithoutReq } from '../../src/net/peerConnection'
import { addressGroup, connectionAllowedFrom } from '../../src/net/address'
import { PeerServer, tooSlow, type PeerServerOptions } from '../../src/net/peerServer'
import { ClusterTable } from '../../src/peer/clusterTable'
import { setBit } from '../../src/peer/picker'
import { PieceLog } from '../../src/peer/pieceLog'
import { encodeFrameHead } from '../../src/protocol/codec'
import type { Leech, PeerMessage, PeerRequest } from '../../src/protocol/messages'
import { serveRequest, serveWatch, type Outgoing, type ServeContext, type ServedFile } from '../../src/peer/serve'

const BLOCK = 64 * 1024
const data = Buffer.alloc(8 * BLOCK, 1)
const handle = (m: PeerRequest): Outgoing => m.type === 'leech'
  ? { msg: { type: 'piece', req: m.req, pieceSize: BLOCK, offset: m.offset, totalPieces: 8, clusterName: m.hash }, payload: { source: { size: data.length, view: (o, l) => [data.subarray(o, o + l)] }, offset: m.offset, length: BLOCK } }
  : { msg: { type: 'error', req: m.req, code: 'BAD_REQUEST', message: 'only pieces here' } }
const ask = (c: PeerConnection, i: number): Promise<unknown> => firstValueFrom(c.request({ type: 'leech', hash: 'ab'.repeat(32), size: data.length, offset: i * BLOCK, blockSize: BLOCK, pieces: 8 }).pipe(timeout(3000)))
  .then(() => 'piece', (e: { remoteCode?: string, message: string }) => e.remoteCode ?? e.message)

// 1 MiB pieces of a 64 MiB file, and a client that asks for `n` of them at once and reads nothing
const MiB = 1024 * 1024
const big = Buffer.alloc(MiB, 3)
const handleBig = (m: PeerRequest): Outgoing => m.type === 'leech'
  ? { msg: { type: 'piece', req: m.req, pieceSize: MiB, offset: m.offset, totalPieces: 64, clusterName: m.hash }, payload: { source: { size: big.length, view: (_o, l) => [big.subarray(0, l)] }, offset: 0, length: MiB } }
  : { msg: { type: 'error', req: m.req, code: 'BAD_REQUEST', message: 'only pieces here' } }
const askUnread = (s: net.Socket, n = 48): void => {
  s.pause()
  for (let i = 0; i < n; i++) s.write(encodeFrameHead({ type: 'leech', req: i + 1, hash: 'ab'.repeat(32), size: 64 * MiB, offset: i * MiB, blockSize: MiB, pieces: 64 }))
}

describe('PeerServer upload queue', () => {
  let server: PeerServer | null = null
  const conns: PeerConnection[] = []
  afterEach(async () => { for (const c of conns.splice(0)) c.close(); await server?.close(); server = null })

  it('declines piece requests with BUSY once busyBytes are queued, at once; the queue of a closed connection stops counting', async () => {
    // an upload budget that never grants: everything accepted stays queued
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, budget: { take: () => NEVER }, busyBytes: 2 * BLOCK })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    const answers = [0, 1, 2, 3].map((i) => ask(c, i))
    // the first two wait for budget (never granted here); the third and fourth are declined
    expect(await Promise.race([answers[2], new Promise((r) => setTimeout(() => r('no answer'), 2000))])).toBe('BUSY')
    expect(await answers[3]).toBe('BUSY')
    expect(server.queuedPieceBytes).toBe(2 * BLOCK)
    c.close()
    // a closed connection's queue no longer counts
    for (let i = 0; i < 50 && server.queuedPieceBytes > 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(server.queuedPieceBytes).toBe(0)
  })

  it('a real budget behind a low cap: the piece larger than its burst goes out at once, and while the budget owes it the next request hears BUSY (not a wait past its piece timeout)', async () => {
    // 10 kB/s, burst 2.5 kB: a 64 KiB piece leaves the budget 6 s in debt
    const budget = new TokenBucket({ rate: 10_000 })
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, budget, busyBytes: 250, owed: () => budget.owed() })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    expect(await ask(c, 0)).toBe('piece')
    expect(budget.owed()).toBeGreaterThan(BLOCK - 2500 - 10_000) // (less what a second could repay)
    expect(await ask(c, 1)).toBe('BUSY')
    expect(server.queuedPieceBytes).toBe(0)
  })

  it('a BUSY says when to ask again when the node says (busyWaitMs), over TCP to the asker\'s RemoteError', async () => {
    const asked: string[] = []
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, budget: { take: () => NEVER }, busyBytes: BLOCK, busyWaitMs: (m) => { asked.push(m.type); return 33 } })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    void ask(c, 0) // fills busyBytes (never granted)
    const declined = await firstValueFrom(c.request({ type: 'leech', hash: 'ab'.repeat(32), size: data.length, offset: BLOCK, blockSize: BLOCK, pieces: 8 }).pipe(timeout(3000))).then(() => null, (e: unknown) => e)
    expect(declined).toMatchObject({ remoteCode: 'BUSY', retryMs: 33 })
    expect(asked).toEqual(['leech'])
  })

  it('declines a hash list with BUSY while busyBytes are queued (those who hold the list spread it); passes it on before', async () => {
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, budget: { take: () => NEVER }, busyBytes: 2 * BLOCK })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    const hashes = (): Promise<unknown> => firstValueFrom(c.request({ type: 'get_hashes', fileId: 'ab'.repeat(32), from: 0, count: 8 }).pipe(timeout(3000)))
      .then(() => 'hashes', (e: { remoteCode?: string, message: string }) => e.remoteCode ?? e.message)
    // (the handler here answers anything but pieces with BAD_REQUEST: that is the request passed on)
    expect(await hashes()).toBe('BAD_REQUEST')
    void ask(c, 0); void ask(c, 1)
    for (let i = 0; i < 50 && server.queuedPieceBytes < 2 * BLOCK; i++) await new Promise((r) => setTimeout(r, 20))
    expect(await hashes()).toBe('BUSY')
  })

  it('without busyBytes, queues every request (up to the outstanding limit)', async () => {
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0 })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    expect(await Promise.all([0, 1, 2, 3, 4, 5].map((i) => ask(c, i)))).toEqual(Array(6).fill('piece'))
    expect(server.queuedPieceBytes).toBe(0)
  })
})

describe('PeerServer onIdle', () => {
  let server: PeerServer | null = null
  const conns: PeerConnection[] = []
  afterEach(async () => { for (const c of conns.splice(0)) c.close(); await server?.close(); server = null })

  it('is called when the last queued piece is granted and sent, not while pieces still wait', async () => {
    // a budget granted by hand: three pieces queue, each goes out when its grant comes
    const grants: Array<() => void> = []
    const budget = { take: () => new Observable<unknown>((sub) => { grants.push(() => { sub.next(null); sub.complete() }) }) }
    const idle: number[] = []
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, budget, onIdle: () => idle.push(server?.queuedPieceBytes ?? -1) })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    const answers = [0, 1, 2].map((i) => ask(c, i))
    for (let i = 0; i < 100 && grants.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    grants.shift()?.() // piece 0 goes; 1 and 2 wait
    await answers[0]
    for (let i = 0; i < 100 && grants.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    expect(idle).toEqual([])
    grants.shift()?.()
    await answers[1]
    for (let i = 0; i < 100 && grants.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    expect(idle).toEqual([])
    grants.shift()?.() // the last: nothing is queued after it
    expect(await answers[2]).toBe('piece')
    expect(idle).toEqual([0])
  })

  // The budget runs on virtual time, advanced by hand once every request is queued, and the order
  // is read where the server answers: the order is the budget's, not the machine's timing.
  const rarestSetup = async (peers: string[]): Promise<{ conns: PeerConnection[], sent: number[], ask: (conn: PeerConnection, i: number, copies: number) => Promise<unknown>, release: (queued: number) => Promise<void> }> => {
    const vts = new VirtualTimeScheduler()
    const sent: number[] = []
    const recording = (m: PeerRequest): Outgoing => { if (m.type === 'leech') sent.push(m.offset / BLOCK); return handle(m) }
    // 64 KiB pieces at 640 KiB/s: one every 100 (virtual) ms; the first goes at once (a full bucket)
    const s = new PeerServer(recording, { host: '127.0.0.1', port: 0, budget: new TokenBucket({ rate: 10 * BLOCK, burst: BLOCK, ageMs: RAREST_FIRST_AGE_MS, scheduler: vts }) })
    server = s
    const addr = await s.start()
    const cs = peers.map((x) => new PeerConnection({ nodeId: x.repeat(32), host: '127.0.0.1', port: addr.port }))
    conns.push(...cs)
    const ask = (conn: PeerConnection, i: number, copies: number): Promise<unknown> =>
      firstValueFrom(conn.request({ type: 'leech', hash: 'ab'.repeat(32), size: data.length, offset: i * BLOCK, blockSize: BLOCK, pieces: 8, copies }).pipe(timeout(3000)))
    const release = async (queued: number): Promise<void> => {
      for (let i = 0; i < 200 && s.queuedPieceBytes < queued * BLOCK; i++) await new Promise((r) => setTimeout(r, 10))
      expect(s.queuedPieceBytes).toBe(queued * BLOCK)
      vts.flush()
    }
    return { conns: cs, sent, ask, release }
  }

  it('sends the piece with the fewest copies first, from any connection, once the budget grants', async () => {
    const { conns: [a, b, c], sent, ask, release } = await rarestSetup(['a', 'b', 'c'])
    await ask(a, 0, 9) // takes the full bucket
    // a common piece asked first, a rare one (one copy) after it on another connection
    const common = ask(b, 1, 9)
    await new Promise((r) => setTimeout(r, 20))
    const rare = ask(c, 2, 1)
    await release(2)
    await Promise.all([common, rare])
    expect(sent).toEqual([0, 2, 1])
  })

  it('puts every piece request of a connection on the budget at once: a rare piece is not held behind a common one asked before it', async () => {
    const { conns: [a, b], sent, ask, release } = await rarestSetup(['a', 'b'])
    await ask(a, 0, 9) // takes the full bucket
    // on one connection a common piece, then a rare one; another connection's piece in between
    const waits = [ask(a, 1, 9), ask(a, 2, 1), ask(b, 3, 5)]
    // (one request at a time per connection would have only a's common piece and b's waiting)
    await release(3)
    await Promise.all(waits)
    expect(sent).toEqual([0, 2, 3, 1])
  })

  it('without a budget, is called after each piece sent with nothing queued behind it (never for other replies)', async () => {
    const idle: number[] = []
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, onIdle: () => idle.push(server?.queuedPieceBytes ?? -1) })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    expect(await ask(c, 0)).toBe('piece')
    expect(await firstValueFrom(c.request({ type: 'probe', fileId: 'ab'.repeat(32) }).pipe(timeout(3000))).then(() => 'answer', (e: { remoteCode?: string }) => e.remoteCode)).toBe('BAD_REQUEST')
    expect(idle).toEqual([0])
  })
})

describe('PeerServer fresh pieces and busyBytes', () => {
  let server: PeerServer | null = null
  const conns: PeerConnection[] = []
  afterEach(async () => { for (const c of conns.splice(0)) c.close(); await server?.close(); server = null })

  it('lets a fresh piece through up to FRESH_QUEUE_FACTOR × busyBytes; others get BUSY past busyBytes', async () => {
    // pieces 4..7 never went out from here (fresh); the budget never grants: all accepted stays queued
    expect(FRESH_QUEUE_FACTOR).toBe(2) // the counts below assume it
    const asked: number[] = []
    const freshPiece = (m: Leech): boolean => { asked.push(m.offset / BLOCK); return m.offset >= 4 * BLOCK }
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, budget: { take: () => NEVER }, busyBytes: 2 * BLOCK, passesBusy: freshPiece })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    const answers = [0, 1, 2, 4, 5, 6].map((i) => ask(c, i))
    const late = (p: Promise<unknown>): Promise<unknown> => Promise.race([p, new Promise((r) => setTimeout(() => r('no answer'), 300))])
    // 0 and 1 fill busyBytes; 2 is not fresh: BUSY; 4 and 5 are fresh: queued up to 2 × busyBytes; 6 would pass that: BUSY
    expect(await answers[2]).toBe('BUSY')
    expect(await answers[5]).toBe('BUSY')
    expect(await late(answers[3])).toBe('no answer')
    expect(await late(answers[4])).toBe('no answer')
    expect(server.queuedPieceBytes).toBe(4 * BLOCK)
    // asked only for pieces past busyBytes and within the fresh allowance
    expect(asked).toEqual([2, 4, 5])
  })
})

describe('PeerServer watches (probes with since)', () => {
  const FILE = 'ab'.repeat(32)
  const OTHER = 'cd'.repeat(32)
  const THIRD = 'ef'.repeat(32)
  let server: PeerServer | null = null
  const conns: PeerConnection[] = []
  const raws: net.Socket[] = []
  afterEach(async () => {
    for (const c of conns.splice(0)) c.close()
    for (const r of raws.splice(0)) r.destroy()
    await server?.close()
    server = null
  })

  /** A download in progress holding pieces `held` of an 8-piece file, served as Lp2pNode does. */
  function node (held: number[]): { ctx: ServeContext, store: (i: number) => void } {
    const bits = new Uint8Array(1)
    const log = new PieceLog(8)
    const store = (i: number): void => { setBit(bits, i); log.add(i) }
    for (const i of held) store(i)
    const file: ServedFile = {
      meta: { name: 'f.bin', hash: FILE, size: data.length, blockSize: BLOCK, pieces: 8 },
      source: () => ({ size: data.length, view: (o, l) => [data.subarray(o, o + l)] }),
      checkSize: () => {},
      pieceHashes: () => Buffer.alloc(8 * 32),
      have: () => bits,
      log,
    }
    return { ctx: { file: (id) => id === FILE ? file : undefined, cluster: new ClusterTable() }, store }
  }

  const connect = (port: number): PeerConnection => {
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port })
    conns.push(c)
    return c
  }
  const lacks = (...pieces: number[]): Uint8Array => { const b = new Uint8Array(1); for (const i of pieces) setBit(b, i); return b }
  /** The reply to a request as a promise: its header, or the remote error code. */
  const send = (c: PeerConnection, msg: WithoutReq<PeerRequest>): Promise<PeerMessage | string> => firstValueFrom(c.request(msg).pipe(timeout(8000)))
    .then((f) => f.msg, (e: { remoteCode?: string, message: string }) => e.remoteCode ?? e.message)
  const watchFor = (c: PeerConnection, since: number, missing: number[], waitMs = 5000, fileId = FILE): Promise<PeerMessage | string> =>
    send(c, { type: 'probe', fileId, since, lacks: lacks(...missing), waitMs })
  const leechOf = (c: PeerConnection, i: number): Promise<PeerMessage | string> =>
    send(c, { type: 'leech', hash: FILE, size: data.length, offset: i * BLOCK, blockSize: BLOCK, pieces: 8 })
  /** Settles to 'pending' when `p` has not settled within `ms`. */
  const within = (p: Promise<unknown>, ms: number): Promise<unknown> => Promise.race([p, new Promise((r) => setTimeout(() => r('pending'), ms))])
  const until = async (ok: () => boolean, ms = 2000): Promise<void> => {
    for (let t = 0; t < ms && !ok(); t += 10) await new Promise((r) => setTimeout(r, 10))
  }
  const serving = (ctx: ServeContext, extra: Partial<PeerServerOptions> = {}): PeerServer =>
    new PeerServer((m, remote) => serveRequest(m, ctx, remote), { host: '127.0.0.1', port: 0, watch: (m, remote) => serveWatch(m, ctx, asyncScheduler, remote), ...extra })

  it('holds a watch while later requests of the connection are answered; answers it when a lacked piece is stored', async () => {
    const { ctx, store } = node([0])
    server = serving(ctx)
    const c = connect((await server.start()).port)
    let answered = false
    const w = watchFor(c, 1, [3, 5]).then((r) => { answered = true; return r })
    // the leech was sent after the watch, on the same connection: it is answered first
    expect(await leechOf(c, 0)).toMatchObject({ type: 'piece', offset: 0 })
    expect(answered).toBe(false)
    expect(server.heldWatches).toBe(1)
    // a piece the asker does not lack is no news
    store(2)
    expect(await within(w, 200)).toBe('pending')
    store(5)
    expect(await w).toMatchObject({ type: 'have', fileId: FILE, totalPieces: 8, bitfield: lacks(0, 2, 5), version: 3 })
    expect(server.heldWatches).toBe(0)
  })

  it('answers a watch with news since `since` at once', async () => {
    const { ctx } = node([0, 4])
    server = serving(ctx)
    const c = connect((await server.start()).port)
    expect(await within(watchFor(c, 1, [4]), 1000)).toMatchObject({ type: 'have', bitfield: lacks(0, 4), version: 2 })
    expect(server.heldWatches).toBe(0)
  })

  it('answers a watch with no news after waitMs', async () => {
    const { ctx } = node([0])
    server = serving(ctx)
    const c = connect((await server.start()).port)
    const t0 = Date.now()
    expect(await watchFor(c, 1, [3], 300)).toMatchObject({ type: 'have', bitfield: lacks(0), version: 1 })
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
    expect(server.heldWatches).toBe(0)
  })

  it('a newer watch for the same file replaces the older: only the newer is answered', async () => {
    const { ctx, store } = node([0])
    server = serving(ctx)
    const c = connect((await server.start()).port)
    const first = watchFor(c, 1, [3])
    const second = watchFor(c, 1, [3])
    await leechOf(c, 0) // both watches reached the server
    expect(server.heldWatches).toBe(1)
    store(3)
    expect(await second).toMatchObject({ type: 'have', version: 2 })
    // the replaced watch is never answered (its asker would have timed it out)
    expect(await within(first, 300)).toBe('pending')
    expect(server.heldWatches).toBe(0)
  })

  it('declines watches past maxWatches with BAD_REQUEST; replacing a held one is not one more', async () => {
    let live = 0
    const held = (): Observable<Outgoing> => new Observable<Outgoing>(() => { live++; return () => { live-- } })
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, watch: held, maxWatches: 2 })
    const c = connect((await server.start()).port)
    void watchFor(c, 0, [1], 5000, FILE)
    void watchFor(c, 0, [1], 5000, OTHER)
    expect(await watchFor(c, 0, [1], 5000, THIRD)).toBe('BAD_REQUEST')
    void watchFor(c, 0, [1], 5000, FILE)
    await leechOf(c, 0)
    expect(server.heldWatches).toBe(2)
    expect(live).toBe(2)
    expect(server.connections).toBe(1)
  })

  it('drops a connection\'s watches when it closes, and every watch when the server closes', async () => {
    let live = 0
    const held = (): Observable<Outgoing> => new Observable<Outgoing>(() => { live++; return () => { live-- } })
    const s = new PeerServer(handle, { host: '127.0.0.1', port: 0, watch: held })
    server = s
    const port = (await s.start()).port
    const a = connect(port)
    const b = connect(port)
    for (const f of [FILE, OTHER]) { void watchFor(a, 0, [1], 5000, f); void watchFor(b, 0, [1], 5000, f) }
    await Promise.all([leechOf(a, 0), leechOf(b, 0)])
    expect(s.heldWatches).toBe(4)
    expect(live).toBe(4)
    a.close()
    await until(() => s.heldWatches === 2)
    expect(s.heldWatches).toBe(2)
    expect(live).toBe(2)
    await s.close()
    expect(s.heldWatches).toBe(0)
    expect(live).toBe(0)
  })

  it('a watch whose connection closed is dropped: a later lacked piece answers nothing', async () => {
    const { ctx, store } = node([0])
    server = serving(ctx)
    const s = server
    const c = connect((await s.start()).port)
    void watchFor(c, 1, [3])
    await leechOf(c, 0)
    c.close()
    await until(() => s.heldWatches === 0)
    expect(s.heldWatches).toBe(0)
    store(3) // its log listener is gone: nothing to answer
    expect(s.connections).toBe(0)
  })

  it('without the watch option, a watch is answered at once through handle, in order', async () => {
    const { ctx } = node([0])
    server = new PeerServer((m, remote) => serveRequest(m, ctx, remote), { host: '127.0.0.1', port: 0 })
    const c = connect((await server.start()).port)
    expect(await within(watchFor(c, 1, [3]), 1000)).toMatchObject({ type: 'have', bitfield: lacks(0), version: 1 })
    expect(server.heldWatches).toBe(0)
  })

  it('a watch that arrives while the socket is backed up waits its turn in the queue (a reader that does not read costs no memory)', async () => {
    const BIG = 1024 * 1024
    const big = Buffer.alloc(8 * BIG, 2)
    const bigHandle = (m: PeerRequest): Outgoing => m.type === 'leech'
      ? { msg: { type: 'piece', req: m.req, pieceSize: BIG, offset: m.offset, totalPieces: 8, clusterName: m.hash }, payload: { source: { size: big.length, view: (o, l) => [big.subarray(o, o + l)] }, offset: m.offset, length: BIG } }
      : { msg: { type: 'error', req: m.req, code: 'BAD_REQUEST', message: 'only pieces here' } }
    let started = 0
    const s = new PeerServer(bigHandle, { host: '127.0.0.1', port: 0, highWaterBytes: BIG, watch: () => { started++; return NEVER } })
    server = s
    const port = (await s.start()).port
    // a raw client that asks for 48 MiB of pieces and reads nothing
    const sock = net.connect({ host: '127.0.0.1', port })
    raws.push(sock)
    sock.pause()
    await new Promise((r) => sock.once('connect', r))
    for (let i = 0; i < 48; i++) sock.write(encodeFrameHead({ type: 'leech', req: i + 1, hash: FILE, size: big.length, offset: (i % 8) * BIG, blockSize: BIG, pieces: 8 }))
    // the server stops answering once its send buffer is over highWater: pieces stay queued
    let before = -1
    await until(() => { const q = s.queuedPieceBytes; const stuck = q > 0 && q === before; before = q; return stuck }, 5000)
    expect(s.queuedPieceBytes).toBeGreaterThan(0)
    sock.write(encodeFrameHead({ type: 'probe', req: 100, fileId: FILE, since: 0, lacks: new Uint8Array(1), waitMs: 5000 }))
    await new Promise((r) => setTimeout(r, 200))
    expect(started).toBe(0)
    expect(s.heldWatches).toBe(0)
    // the client reads again: the queue drains, and the watch is held once reached
    sock.resume()
    await until(() => started === 1, 5000)
    expect(started).toBe(1)
    expect(s.heldWatches).toBe(1)
  })
})

describe('PeerServer connection guards', () => {
  let server: PeerServer | null = null
  const socks: net.Socket[] = []
  const conns: PeerConnection[] = []
  afterEach(async () => { for (const s of socks.splice(0)) s.destroy(); for (const c of conns.splice(0)) c.close(); await server?.close(); server = null })

  const open = async (port: number): Promise<net.Socket> => {
    const s = net.connect(port, '127.0.0.1')
    socks.push(s)
    s.on('error', () => {})
    await new Promise((r) => s.once('connect', r))
    return s
  }
  const closed = (s: net.Socket, ms: number): Promise<boolean> => new Promise((resolve) => {
    if (s.destroyed || s.readableEnded) { resolve(true); return }
    const t = setTimeout(() => resolve(false), ms)
    s.once('close', () => { clearTimeout(t); resolve(true) })
  })
  const probe = (port: number): Promise<unknown> => {
    const c = new PeerConnection({ nodeId: 'c'.repeat(32), host: '127.0.0.1', port })
    conns.push(c)
    return firstValueFrom(c.request({ type: 'probe', fileId: 'ab'.repeat(32) }).pipe(timeout(3000)))
      .then((f) => f.msg.type, (e: { remoteCode?: string, message: string }) => e.remoteCode ?? e.message)
  }

  it('closes a connection whose request frame announces a payload, before the payload comes (nothing is buffered for it)', async () => {
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0 })
    const { port } = await server.start()
    const s = await open(port)
    // a piece header announcing 8 MiB: a request never carries a payload
    s.write(encodeFrameHead({ type: 'piece', req: 1, pieceSize: 8 * 1024 * 1024, offset: 0, totalPieces: 1, clusterName: 'ab'.repeat(32) } as PeerMessage, 8 * 1024 * 1024))
    expect(await closed(s, 2000)).toBe(true)
    expect(await probe(port)).toBe('BAD_REQUEST') // the server serves on
  })

  it('closes a connection whose request frame is not complete within frameDeadlineMs, though bytes keep coming', async () => {
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, frameDeadlineMs: 300 })
    const { port } = await server.start()
    const s = await open(port)
    const frame = encodeFrameHead({ type: 'probe', req: 1, fileId: 'ab'.repeat(32) })
    // one byte every 100 ms (each would reset an idle timeout), the frame never complete in time
    let i = 0
    const drip = setInterval(() => { if (i < frame.length - 1 && !s.destroyed) s.write(frame.subarray(i, ++i)) }, 100)
    try {
      expect(await closed(s, 1500)).toBe(true)
      expect(i).toBeLessThan(frame.length - 1)
    } finally { clearInterval(drip) }
  })

  it('a connection that completes its frames in time is kept (the deadline restarts with each frame)', async () => {
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, frameDeadlineMs: 300 })
    const { port } = await server.start()
    const s = await open(port)
    const replies: Buffer[] = []
    s.on('data', (d: Buffer) => replies.push(d))
    // six frames over ~1.2 s, each split in two halves 100 ms apart
    for (let k = 0; k < 6; k++) {
      const f = encodeFrameHead({ type: 'probe', req: k + 1, fileId: 'ab'.repeat(32) })
      s.write(f.subarray(0, 5))
      await new Promise((r) => setTimeout(r, 100))
      s.write(f.subarray(5))
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(s.destroyed).toBe(false)
    expect(replies.length).toBeGreaterThan(0)
  })

  it('when full, a new connection takes the place of the one idle longest; else of the one holding only watches the longest', async () => {
    const watch = (): Observable<Outgoing> => NEVER // a held watch
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, maxConnections: 2, watch })
    const { port } = await server.start()
    const idle1 = await open(port)
    await new Promise((r) => setTimeout(r, 20))
    const idle2 = await open(port)
    // a third: the older idle one makes room
    expect(await probe(port)).toBe('BAD_REQUEST')
    expect(await closed(idle1, 1000)).toBe(true)
    expect(idle2.destroyed).toBe(false)
    // now hold a watch on the two open connections (idle2's first): a newcomer takes idle2's place
    // (a watch is asked again when it ends: before, connections holding watches kept every slot
    // without a byte read, and a newcomer was refused)
    idle2.write(encodeFrameHead({ type: 'probe', req: 1, fileId: 'ab'.repeat(32), since: 0, lacks: new Uint8Array(1), waitMs: 10_000 }))
    await new Promise((r) => setTimeout(r, 20))
    const c = conns[0]
    c.request({ type: 'probe', fileId: 'cd'.repeat(32), since: 0, lacks: new Uint8Array(1), waitMs: 10_000 }).subscribe({ error: () => {} })
    await new Promise((r) => setTimeout(r, 100))
    expect(server.heldWatches).toBe(2)
    await open(port)
    expect(await closed(idle2, 1000)).toBe(true)
    await new Promise((r) => setTimeout(r, 50))
    expect(server.connections).toBe(2)
    expect(server.heldWatches).toBe(1)
  })

  it('when full of connections whose pieces are on their way (or wait for the upload budget), a newcomer is refused', async () => {
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, maxConnections: 2, budget: { take: () => NEVER } })
    const { port } = await server.start()
    const a = await open(port)
    const b = await open(port)
    for (const s of [a, b]) s.write(encodeFrameHead({ type: 'leech', req: 1, hash: 'ab'.repeat(32), size: data.length, offset: 0, blockSize: BLOCK, pieces: 8 }))
    await new Promise((r) => setTimeout(r, 100))
    const late = await open(port).catch(() => null)
    expect(late === null || await closed(late, 1000)).toBe(true)
    expect(a.destroyed || b.destroyed).toBe(false)
    expect(server.connections).toBe(2)
  })

  it('when full of connections served, none slow, a newcomer takes the place of the one connected longest once it was served past the tenure (128 fast readers held every slot for good)', async () => {
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, maxConnections: 2, budget: { take: () => NEVER }, tenureMs: 300 })
    const { port } = await server.start()
    const a = await open(port)
    await new Promise((r) => setTimeout(r, 50))
    const b = await open(port)
    for (const s of [a, b]) s.write(encodeFrameHead({ type: 'leech', req: 1, hash: 'ab'.repeat(32), size: data.length, offset: 0, blockSize: BLOCK, pieces: 8 }))
    await new Promise((r) => setTimeout(r, 400))
    const late = await open(port)
    expect(await closed(a, 1000)).toBe(true)
    expect(b.destroyed).toBe(false)
    expect(await closed(late, 200)).toBe(false)
    expect(server.connections).toBe(2)
    for (const s of [b, late]) s.destroy()
  })

  it('when full of readers, a newcomer takes the place of the slowest reader, if slower than minDrainBytesPerS (130 trickling readers held every slot of a peer, and honest gets failed)', async () => {
    // (a floor no reader can meet; a stall closes nobody within this test)
    server = new PeerServer(handleBig, { host: '127.0.0.1', port: 0, maxConnections: 2, minDrainBytesPerS: 1e12, writeStallMs: 60_000 })
    const { port } = await server.start()
    const readers = [await open(port), await open(port)]
    for (const s of readers) {
      askUnread(s) // reads nothing
    }
    // who the server holds, by the port each of ours has
    const held = (): number[] => [...(server as unknown as { sockets: Set<net.Socket> }).sockets].map((x) => x.remotePort as number).sort()
    const ports = readers.map((s) => s.localPort as number)
    // (a rate is known once replies waited a second: until then a reader is not judged)
    await new Promise((r) => setTimeout(r, 200))
    const early = await open(port)
    await new Promise((r) => setTimeout(r, 100))
    expect(held()).toEqual([...ports].sort())
    expect(await closed(early, 500)).toBe(true)
    await new Promise((r) => setTimeout(r, 2500))
    const late = await open(port)
    await new Promise((r) => setTimeout(r, 100))
    const now = held()
    expect(now).toHaveLength(2)
    expect(now).toContain(late.localPort)
    expect(ports.filter((p) => now.includes(p))).toHaveLength(1)
  }, 15_000)
})

describe('PeerServer write stalls', () => {
  let server: PeerServer | null = null
  afterEach(async () => { await server?.close(); server = null })

  it('closes a connection that asks for pieces and never reads them (it held its slot and its buffer for good)', async () => {
    server = new PeerServer(handleBig, { host: '127.0.0.1', port: 0, writeStallMs: 400 })
    const { port } = await server.start()
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    await new Promise((r) => s.once('connect', r))
    askUnread(s) // never reads
    // (the server closes its side; this paused reader would see it only behind the unread bytes)
    for (let i = 0; i < 30 && server.connections === 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(server.connections).toBe(1)
    for (let i = 0; i < 250 && server.connections > 0; i++) await new Promise((r) => setTimeout(r, 20))
    s.destroy()
    expect(server.connections).toBe(0)
  })
})

describe('PeerServer paused reads and the frame deadline', () => {
  it('a reader whose next request frame was half read when reading stopped (replies piling up) is not closed by the frame deadline while it takes its replies', async () => {
    const reasons: string[] = []
    const server = new PeerServer(handleBig, { host: '127.0.0.1', port: 0 }) // (the default deadline, 5 s, and highWater, 4 MiB)
    ;(server as unknown as { log: unknown }).log = { warn: (o: { why: string }) => reasons.push(o.why), debug: () => {}, error: () => {} }
    const { port } = await server.start()
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    await new Promise((r) => s.once('connect', r))
    s.pause()
    const req = (i: number): Buffer => encodeFrameHead({ type: 'leech', req: i + 1, hash: 'ab'.repeat(32), size: 64 * MiB, offset: (i % 64) * MiB, blockSize: MiB, pieces: 64 })
    // 32 pipelined requests (32 MiB of replies: reading stops), and the first bytes of a 33rd
    const next = req(32)
    s.write(Buffer.concat([...Array.from({ length: 32 }, (_, i) => req(i)), next.subarray(0, 10)]))
    await new Promise((r) => setTimeout(r, 100))
    s.write(next.subarray(10)) // (the frame's rest on the wire 100 ms later)
    // about 320 KiB/s, five times the floor
    const trickle = setInterval(() => { s.read(64 * 1024) }, 200)
    try {
      for (let i = 0; i < 400 && server.connections > 0; i++) await new Promise((r) => setTimeout(r, 20))
      expect(reasons).toEqual([])
      expect(server.connections).toBe(1)
    } finally { clearInterval(trickle); s.destroy(); await server.close() }
  }, 20_000)
})

describe('tooSlow', () => {
  it('closes a reader that took nothing, or less than the floor while the others take four times as much; not one that shares a busy uplink with readers as slow', () => {
    const floor = 64 * 1024
    expect(tooSlow(0, floor, 0)).toBe(true)
    expect(tooSlow(16 * 1024, floor, 16 * 1024)).toBe(false) // all as slow: the uplink is shared
    expect(tooSlow(16 * 1024, floor, 48 * 1024)).toBe(false)
    expect(tooSlow(16 * 1024, floor, 5 * 1024 * 1024)).toBe(true) // a trickle beside readers taking megabytes
    expect(tooSlow(100 * 1024, floor, 5 * 1024 * 1024)).toBe(false) // above the floor
  })
})

describe('PeerServer replies piling up unread', () => {
  let server: PeerServer | null = null
  afterEach(async () => { await server?.close(); server = null })

  it('a peer that sends requests answered at once (BUSY) and reads nothing: requests are no longer read past highWater bytes of replies, and the connection is closed after writeStallMs (it grew the process by 40 MB/s before)', async () => {
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, budget: { take: () => NEVER }, busyBytes: BLOCK, highWaterBytes: 64 * 1024, writeStallMs: 400 })
    const { port } = await server.start()
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    await new Promise((r) => s.once('connect', r))
    s.pause() // never reads
    // 200,000 piece requests (about 20 MB) at once: the first is queued (its budget never comes), the rest hear BUSY (more than loopback buffers take)
    const req = (i: number): Buffer => encodeFrameHead({ type: 'leech', req: i + 1, hash: 'ab'.repeat(32), size: data.length, offset: (i % 8) * BLOCK, blockSize: BLOCK, pieces: 8 })
    for (let i = 0; i < 200_000; i += 1000) s.write(Buffer.concat(Array.from({ length: 1000 }, (_, k) => req(i + k))))
    const sockets = (server as unknown as { sockets: Set<net.Socket> }).sockets
    let most = 0
    let closedAfter = -1
    for (let t = 0; t < 200; t++) {
      for (const x of sockets) most = Math.max(most, x.writableLength)
      if (t > 5 && server.connections === 0) { closedAfter = t * 20; break }
      await new Promise((r) => setTimeout(r, 20))
    }
    s.destroy()
    // (bounded by highWater and what one read of requests answers, not by what was asked)
    expect(most).toBeGreaterThan(0)
    expect(most).toBeLessThan(64 * 1024 + 256 * 1024)
    expect(closedAfter).toBeGreaterThan(0)
  })
})

describe('addressGroup', () => {
  it('one key per host address, however written; IPv6 hosts of one /64 (one LAN) are counted apart', () => {
    expect(addressGroup('10.0.0.5')).toBe('10.0.0.5')
    expect(addressGroup('::ffff:10.0.0.5')).toBe('10.0.0.5')
    expect(addressGroup('2001:db8:1:2::1')).toBe('2001:db8:1:2:0:0:0:1')
    expect(addressGroup('2001:0db8:0001:0002:0:0:0:1')).toBe(addressGroup('2001:db8:1:2::1'))
    expect(addressGroup('fe80::1%eth0')).toBe(addressGroup('FE80::1'))
    expect(addressGroup('2001:db8:1:2::2')).not.toBe(addressGroup('2001:db8:1:2::1'))
  })
})

describe('connectionAllowedFrom', () => {
  it('caps connections per remote address off loopback only', () => {
    expect(connectionAllowedFrom('10.0.0.5', 15, 16)).toBe(true)
    expect(connectionAllowedFrom('10.0.0.5', 16, 16)).toBe(false)
    expect(connectionAllowedFrom('fd00::5', 16, 16)).toBe(false)
    expect(connectionAllowedFrom('127.0.0.1', 500, 16)).toBe(true)
    expect(connectionAllowedFrom('::ffff:127.0.0.1', 500, 16)).toBe(true)
    expect(connectionAllowedFrom('::1', 500, 16)).toBe(true)
  })
})
