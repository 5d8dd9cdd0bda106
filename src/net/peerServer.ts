import net from 'node:net'
import { CONNECTION_TENURE_MS, FRAME_DEADLINE_MS, FRESH_QUEUE_FACTOR, MIN_DRAIN_BYTES_PER_S, WRITE_STALL_MS, IDLE_TIMEOUT_MS, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS, MAX_HEADER_BYTES, MAX_OUTSTANDING_PER_CONNECTION, MAX_WATCHES_PER_CONNECTION } from '../limits'
import { log } from '../log'
import { encodeFrameHead, FRAME_PREFIX_BYTES } from '../protocol/codec'
import { FrameDecoder } from '../protocol/frames'
import { REMOTE_CODES, type Leech, type PeerRequest, type Probe } from '../protocol/messages'
import { busyReply, sendPriority, type Outgoing, type Remote } from '../peer/serve'
import type { ByteBudget } from '../peer/leech'
import { take, type Observable, type Subscription } from 'rxjs'
import type { Endpoint } from '../tracker/flow'
import { addressGroup, AddressCounts } from './address'
import { readPages } from '../../streams/readPages'

export interface PeerServerOptions {
  host?: string
  port?: number
  /** Connections at once (MAX_CONNECTIONS); when full, a new one replaces the one idle longest, if any is idle. */
  maxConnections?: number
  /** Connections at once from one remote address off loopback (MAX_CONNECTIONS_PER_ADDRESS). */
  maxPerAddress?: number
  /** A request frame started must be complete within this long (FRAME_DEADLINE_MS). */
  frameDeadlineMs?: number
  /** A connection whose replies wait unsent for this long, taken slower than minDrainBytesPerS, is closed (WRITE_STALL_MS). */
  writeStallMs?: number
  /** MIN_DRAIN_BYTES_PER_S. */
  minDrainBytesPerS?: number
  /** CONNECTION_TENURE_MS. */
  tenureMs?: number
  idleMs?: number
  maxOutstanding?: number
  /** Bytes queued in a socket before we stop answering its requests until it drains. */
  highWaterBytes?: number
  /** Called with the bytes of each piece payload sent (for counters). */
  onUpload?: (bytes: number) => void
  /** Upload cap shared by every connection: a piece goes out only when the budget grants its bytes. */
  budget?: ByteBudget
  /**
   * Piece bytes queued (over all connections) beyond which a new piece request is declined at
   * once with BUSY, so the asker goes to another source instead of waiting in a long queue.
   * Default: none (TCP backpressure and `maxOutstanding` bound what waits).
   */
  busyBytes?: number
  /**
   * Bytes the upload budget still owes for pieces already sent (a piece larger than its burst
   * goes out at once, leaving it in debt): counted as queued, so the next asker hears BUSY
   * instead of waiting that long for its piece (past its piece timeout, behind a low cap).
   */
  owed?: () => number
  /**
   * May this piece request pass a busy uplink (see `passesBusy`: a piece that never went out from
   * this node, or an asker that is starved)? Such a request is accepted until FRESH_QUEUE_FACTOR ×
   * `busyBytes` are queued, so new pieces spread at once instead of waiting out the backlog of
   * pieces many peers have already, and no asker is left behind.
   */
  passesBusy?: (m: Leech) => boolean
  /** What a BUSY to this request asks of the asker: wait this long before asking again (see `busyWaitFor`). */
  busyWaitMs?: (m: PeerRequest) => number | undefined
  /**
   * The answer to a watch (a probe with `since`): emits once, when the node has news for the asker
   * or its wait is over. Watches are held beside the connection's request queue (a held watch
   * would block the requests after it for seconds) and answered whenever they emit: the client
   * matches replies by `req`. Without it, watches are answered at once through `handle`.
   */
  watch?: (m: Probe, remote: Remote) => Observable<Outgoing>
  /** Watches held at once per connection (one per file); more are declined with BAD_REQUEST. */
  maxWatches?: number
  /**
   * The last queued piece went out (its upload budget granted, its bytes handed to the socket):
   * nothing is queued now. The node tells its held watches what it has (see WatchKicker).
   */
  onIdle?: () => void
}

interface ConnectionState {
  /** Replies queued, waiting for the upload budget, or still leaving. */
  sending: () => boolean
  /** Watches held. */
  watching: () => boolean
  /** Bytes a second its reader takes the replies waiting for it; undefined when none wait (or only just). */
  drainRate: () => number | undefined
  /** When its last whole frame came. */
  lastFrame: number
  /** When it was accepted. */
  readonly openedAt: number
}

/**
 * Should a reader that took its waiting replies at `rate` bytes/s for a whole stall period lose its
 * connection? When it took nothing; or when under the floor while the readers with replies waiting
 * take four times as much on average (`mean`): an uplink shared by many readers, a seeder on Wi-Fi
 * with 128 of them, gives each less than the floor, and none is at fault.
 */
export function tooSlow (rate: number, minDrain: number, mean: number): boolean {
  return rate === 0 || (rate < minDrain && rate * 4 < mean)
}

const REQUESTS = new Set(['find_cluster', 'get_hashes', 'probe', 'leech'])

const isWatch = (m: PeerRequest): m is Probe => m.type === 'probe' && m.since !== undefined

/**
 * Serves peer requests over TCP. Each connection has its own frame decoder and request queue:
 * requests are taken in order, at most `maxOutstanding` may wait (a client that pipelines more
 * is cut off), and while the socket's send buffer is above `highWaterBytes` nothing new is
 * taken, so a slow reader costs us no memory. A bad frame closes that connection only. Under an
 * upload `budget`, piece requests once taken wait for it all together (the rarest first, over
 * every connection) and their replies may leave out of order: the client matches them by `req`.
 * Watches (probes that wait for news) are held out of that order, at most one per file and
 * `maxWatches` per connection; a watch that arrives while the socket is backed up waits its turn
 * in the queue (started, not awaited, when reached), so a client that does not read its replies
 * cannot make us buffer them.
 */
export class PeerServer {
  private server: net.Server | null = null
  private readonly sockets = new Set<net.Socket>()
  /** Per connection: what is in flight, how fast its reader takes its replies, when its last whole frame came. */
  private readonly state = new Map<net.Socket, ConnectionState>()
  /** Open connections by remote address group (off loopback). */
  private readonly perAddress: AddressCounts
  /** Held watches of each connection, by fileId. */
  private readonly watches = new Map<net.Socket, Map<string, Subscription>>()
  private readonly log = log.child({ module: 'peer-server' })

  constructor (private readonly handle: (m: PeerRequest, remote: Remote) => Outgoing, private readonly opts: PeerServerOptions = {}) {
    this.perAddress = new AddressCounts(opts.maxPerAddress ?? MAX_CONNECTIONS_PER_ADDRESS, addressGroup)
  }

  start (): Promise<Endpoint> {
    const server = net.createServer({ noDelay: true }, (sock) => { if (this.admit(sock)) this.accept(sock) })
    this.server = server
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => {
        server.removeListener('error', reject)
        server.on('error', (err) => this.log.error({ err: err.message }, 'peer server error'))
        const a = server.address() as net.AddressInfo
        resolve({ address: a.address, port: a.port })
      })
    })
  }

  get connections (): number { return this.sockets.size }
  /** Watches held (not yet answered), over all connections. */
  get heldWatches (): number {
    let n = 0
    for (const w of this.watches.values()) n += w.size
    return n
  }
  /** Piece bytes waiting to be sent, over all connections. */
  queuedPieceBytes = 0

  /**
   * May `sock` stay? Off loopback at most `maxPerAddress` per remote address; when every slot is
   * taken, the connection idle longest (nothing in flight) makes room, else the new one is refused.
   * (A host that opens connections and trickles bytes into them, or sends nothing, could otherwise
   * hold every slot, and no one else could download from this peer.)
   */
  private admit (sock: net.Socket): boolean {
    const addr = sock.remoteAddress ?? ''
    if (!this.perAddress.allows(addr)) {
      this.log.debug({ peer: addr }, 'too many connections from one address: refused')
      sock.destroy()
      return false
    }
    if (this.sockets.size >= (this.opts.maxConnections ?? MAX_CONNECTIONS)) {
      // the one idle longest; else the one holding only watches longest (a watch waits for news
      // and is asked again: it could hold a slot without a byte read); else the slowest reader,
      // if it is too slow to keep its slot anyway
      const minDrain = this.opts.minDrainBytesPerS ?? MIN_DRAIN_BYTES_PER_S
      let pick: net.Socket | null = null
      let best = [Infinity, Infinity]
      // else the one connected longest, if for longer than the tenure: a newcomer is served in turn
      const tenureEnd = Date.now() - (this.opts.tenureMs ?? CONNECTION_TENURE_MS)
      for (const [s, st] of this.state) {
        let rank = !st.sending() ? [st.watching() ? 1 : 0, st.lastFrame] : [2, st.drainRate() ?? Infinity]
        if (rank[0] === 2 && rank[1] >= minDrain) {
          if (st.openedAt > tenureEnd) continue
          rank = [3, st.openedAt]
        }
        if (rank[0] < best[0] || (rank[0] === best[0] && rank[1] < best[1])) { best = rank; pick = s }
      }
      if (pick === null) {
        this.log.debug({ peer: addr }, 'every connection busy: refused')
        sock.destroy()
        return false
      }
      this.log.debug({ peer: pick.remoteAddress, why: ['idle', 'watches only', 'slow reader', 'served longest'][best[0]] }, 'connection closed to make room')
      pick.destroy()
      this.forgetSocket(pick)
    }
    this.perAddress.add(addr)
    return true
  }

  /** `sock` is gone (or going): its slot is free. Safe to call twice. */
  private forgetSocket (sock: net.Socket): void {
    if (!this.sockets.delete(sock)) return
    this.state.delete(sock)
    this.perAddress.remove(sock.remoteAddress ?? '')
  }

  private accept (sock: net.Socket): void {
    const peer = `${sock.remoteAddress ?? '?'}:${sock.remotePort ?? '?'}`
    // requests carry no payload: a frame longer than a header is refused before anything is buffered
    const decoder = new FrameDecoder({ maxFrameBytes: FRAME_PREFIX_BYTES + MAX_HEADER_BYTES })
    const queue: PeerRequest[] = []
    const pieceBytes = (m: PeerRequest): number => m.type === 'leech' ? Math.max(0, Math.min(m.blockSize, m.size - m.offset)) : 0
    let mine = 0 // piece bytes of this connection's queue, counted in this.queuedPieceBytes
    const maxOutstanding = this.opts.maxOutstanding ?? MAX_OUTSTANDING_PER_CONNECTION
    const highWater = this.opts.highWaterBytes ?? 4 * 1024 * 1024
    const maxWatches = this.opts.maxWatches ?? MAX_WATCHES_PER_CONNECTION
    const held = new Map<string, Subscription>() // this connection's watches, by fileId
    this.sockets.add(sock)
    this.watches.set(sock, held)
    // a frame begun must be complete within the deadline (any byte would reset the idle timeout)
    let partial: NodeJS.Timeout | null = null
    const frameDeadlineMs = this.opts.frameDeadlineMs ?? FRAME_DEADLINE_MS
    sock.setTimeout(this.opts.idleMs ?? IDLE_TIMEOUT_MS, () => {
      this.log.debug({ peer }, 'idle connection closed')
      sock.destroy()
    })
    const forget = (): void => { this.queuedPieceBytes -= mine; mine = 0; queue.length = 0 }
    const fail = (why: string): void => {
      this.log.warn({ peer, why }, 'closing connection')
      forget()
      sock.destroy()
    }
    const remote: Remote = { host: sock.remoteAddress ?? '' }
    // this connection's pieces waiting for upload budget, all at once (see the class comment)
    const waiting = new Set<Subscription>()
    // a peer that stops reading its replies, or reads them slower than minDrain (they pile up
    // unsent), is cut off after WRITE_STALL_MS: it would hold its slot and its buffer for good
    // (what the kernel took: bytesWritten counts what is still buffered here too, so each reply
    // queued to a peer that reads nothing looked like progress)
    const taken = (): number => sock.bytesWritten - sock.writableLength
    const writeStallMs = this.opts.writeStallMs ?? WRITE_STALL_MS
    const minDrain = this.opts.minDrainBytesPerS ?? MIN_DRAIN_BYTES_PER_S
    // since when replies have waited without a break, and what the kernel had taken then
    let waitingSince: number | null = null
    let takenThen = 0
    /** Bytes a second the kernel took since replies began to wait (`since`: waitingSince). */
    const rateSince = (since: number, now: number): number => (taken() - takenThen) * 1000 / (now - since)
    const st: ConnectionState = {
      // (a reply still leaving counts too)
      sending: () => queue.length > 0 || waiting.size > 0 || sock.writableLength > 0,
      watching: () => held.size > 0,
      // bytes a second the reader took while replies waited for it (known after a second of it)
      drainRate: () => {
        if (waitingSince === null || sock.writableLength === 0) return undefined
        const now = Date.now()
        return now - waitingSince < 1000 ? undefined : rateSince(waitingSince, now)
      },
      lastFrame: Date.now(),
      openedAt: Date.now(),
    }
    this.state.set(sock, st)
    const stallCheck = setInterval(() => {
      const now = Date.now()
      if (sock.writableLength === 0) { waitingSince = null; return }
      if (waitingSince === null) { waitingSince = now; takenThen = taken(); return }
      if (now - waitingSince < writeStallMs) return
      const rate = rateSince(waitingSince, now)
      if (tooSlow(rate, minDrain, this.meanDrain())) { fail(`replies taken at ${Math.round(rate)} B/s for ${writeStallMs} ms`); return }
      waitingSince = now; takenThen = taken()
    }, Math.max(10, Math.min(1000, Math.floor(writeStallMs / 4))))
    stallCheck.unref()
    const send = (out: Outgoing): void => {
      if (out.payload === undefined) { sock.write(encodeFrameHead(out.msg)); return }
      const { source, offset, length } = out.payload
      sock.cork()
      sock.write(encodeFrameHead(out.msg, length))
      // the payload goes from the mapping to the socket, a chunk stream of page views; it counts
      // as uploaded once the kernel took its last chunk (not when queued here: a peer that reads
      // nothing was counted gigabytes it never got, and the tracker was told so)
      let last: Buffer | null = null
      const counted = out.msg.type === 'piece' ? (err?: Error | null): void => { if (err == null) this.opts.onUpload?.(length) } : undefined
      readPages(source, offset, length).subscribe({
        next: (chunk) => { if (last !== null) sock.write(last); last = chunk },
        error: (err) => fail(`read failed: ${(err as Error).message}`),
        complete: () => { if (last !== null) sock.write(last, counted) },
      })
      sock.uncork()
    }
    const answer = (m: PeerRequest): void => send(this.handle(m, remote))
    const watchFn = this.opts.watch
    // a watch is held until it emits; a newer one for the same file replaces it (the older one is
    // never answered: its asker sends a new watch only once the last was answered or given up)
    const startWatch = (m: Probe): void => {
      if (watchFn === undefined) return
      held.get(m.fileId)?.unsubscribe()
      held.delete(m.fileId)
      if (held.size >= maxWatches) {
        sock.write(encodeFrameHead({ type: 'error', req: m.req, code: REMOTE_CODES.badRequest, message: `more than ${maxWatches} watches held` }))
        return
      }
      let s: Subscription | undefined
      let over = false // answered at once, inside subscribe (s not assigned yet)
      const done = (): void => { over = true; if (s !== undefined && held.get(m.fileId) === s) held.delete(m.fileId) }
      s = watchFn(m, remote).pipe(take(1)).subscribe({
        next: (out) => { done(); if (!sock.destroyed) send(out) },
        error: (err: Error) => {
          done()
          this.log.warn({ peer, err: err.message }, 'watch failed')
          if (!sock.destroyed) sock.write(encodeFrameHead({ type: 'error', req: m.req, code: REMOTE_CODES.unavailable, message: 'watch failed' }))
        },
        complete: done,
      })
      if (!over && !sock.destroyed) held.set(m.fileId, s)
      else s.unsubscribe()
    }
    const dropWatches = (): void => { for (const w of held.values()) w.unsubscribe(); held.clear() }
    const pump = (): void => {
      while (queue.length > 0 && sock.writableLength < highWater && !sock.destroyed) {
        const m = queue.shift() as PeerRequest
        if (isWatch(m) && watchFn !== undefined) { startWatch(m); continue } // queued only while the socket was backed up
        const bytes = pieceBytes(m)
        const sent = (): void => { mine -= bytes; this.queuedPieceBytes -= bytes }
        const budget = this.opts.budget
        if (budget === undefined || m.type !== 'leech') { sent(); answer(m); if (bytes > 0) this.idleCheck(); continue }
        // answered (and the file checked) only once the budget grants the piece's bytes; a grant
        // may come at once (inside subscribe: then the subscription is closed already) or later
        // (pieces of all connections wait on one budget, the rarest first: see sendPriority)
        const s = budget.take(Math.min(m.blockSize, m.size - m.offset), sendPriority(m)).pipe(take(1)).subscribe(() => {
          if (sock.destroyed) return
          sent()
          answer(m)
          this.idleCheck()
        })
        if (!s.closed) { waiting.add(s); s.add(() => waiting.delete(s)) }
      }
    }
    // replies piling up unread (highWater and more: answers to requests declined at once, BUSY,
    // do not wait in the queue) stop the reading of requests until they drain: a peer that sends
    // requests and reads nothing grew this process by 40 MB/s, without end
    // (a frame begun when reading stopped gets its whole deadline again once reading resumes: its
    // rest waits unread meanwhile, and a reader taking its replies slowly lost its connection to
    // the deadline)
    const armDeadline = (): void => {
      if (decoder.buffered === 0 || partial !== null) return
      partial = setTimeout(() => fail(`request frame not complete after ${frameDeadlineMs} ms`), frameDeadlineMs)
      partial.unref()
    }
    sock.on('drain', () => { if (sock.isPaused()) { sock.resume(); armDeadline() } pump() })
    sock.on('data', (chunk) => {
      try {
        const frames = decoder.push(chunk)
        // (the deadline runs from the first byte of a frame not yet complete)
        if (frames.length > 0) {
          st.lastFrame = Date.now()
          if (partial !== null) { clearTimeout(partial); partial = null }
        }
        if (decoder.buffered > 0) armDeadline()
        else if (partial !== null) { clearTimeout(partial); partial = null }
        for (const f of frames) {
          if (!REQUESTS.has(f.msg.type)) { fail(`unexpected ${f.msg.type} frame`); return }
          const m = f.msg as PeerRequest
          // a watch waits beside the queue, unless our replies are piling up unread
          if (isWatch(m) && watchFn !== undefined && sock.writableLength < highWater) { startWatch(m); continue }
          if (queue.length >= maxOutstanding) { fail(`more than ${maxOutstanding} requests outstanding`); return }
          // a full uplink (busyBytes queued) gives no hash list either: those who hold it spread it
          if (m.type === 'get_hashes' && this.opts.busyBytes !== undefined && this.queued() >= this.opts.busyBytes) {
            sock.write(encodeFrameHead(busyReply(m.req, 'upload queue full: fetch the hash list from another peer', this.opts.busyWaitMs?.(m))))
            continue
          }
          const bytes = pieceBytes(m)
          if (bytes > 0 && this.overBusy(m as Leech, bytes)) {
            sock.write(encodeFrameHead(busyReply(m.req, 'upload queue full: ask another peer', this.opts.busyWaitMs?.(m))))
            continue
          }
          mine += bytes; this.queuedPieceBytes += bytes
          queue.push(m)
        }
      } catch (err) {
        fail(`bad frame: ${(err as Error).message}`)
        return
      }
      pump()
      if (sock.writableLength >= highWater && !sock.destroyed) {
        sock.pause()
        if (partial !== null) { clearTimeout(partial); partial = null }
      }
    })
    sock.on('error', (err) => this.log.debug({ peer, err: err.message }, 'connection error'))
    sock.on('close', () => {
      if (partial !== null) clearTimeout(partial)
      clearInterval(stallCheck)
      this.forgetSocket(sock)
      this.watches.delete(sock)
      dropWatches(); forget()
      for (const w of waiting) w.unsubscribe()
      waiting.clear()
    })
  }

  /** The mean rate at which the readers that have replies waiting take them (0: none known). */
  private meanDrain (): number {
    let sum = 0; let n = 0
    for (const st of this.state.values()) {
      const r = st.drainRate()
      if (r !== undefined) { sum += r; n++ }
    }
    return n === 0 ? 0 : sum / n
  }

  private idleCheck (): void { if (this.queuedPieceBytes === 0) this.opts.onIdle?.() }

  /**
   * Would queueing `bytes` more for this piece request exceed what we accept? One piece is always
   * accepted when nothing is queued (nor owed); a fresh piece (never sent from here) gets a longer queue.
   */
  private overBusy (m: Leech, bytes: number): boolean {
    const limit = this.opts.busyBytes
    if (limit === undefined) return false
    const queued = this.queued()
    if (queued === 0 || queued + bytes <= limit) return false
    return queued + bytes > FRESH_QUEUE_FACTOR * limit || this.opts.passesBusy?.(m) !== true
  }

  /** Piece bytes waiting to go out: queued, and owed by the upload budget (see `owed`). */
  private queued (): number { return this.queuedPieceBytes + (this.opts.owed?.() ?? 0) }

  /** Stop accepting and close every connection. Safe to call twice. */
  close (): Promise<void> {
    const server = this.server
    this.server = null
    for (const w of this.watches.values()) { for (const s of w.values()) s.unsubscribe(); w.clear() }
    this.watches.clear()
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    this.state.clear()
    this.perAddress.clear()
    if (server === null) return Promise.resolve()
    return new Promise((resolve) => server.close(() => resolve()))
  }
}
