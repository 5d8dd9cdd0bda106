import { map, of, type Observable, type SchedulerLike, type Subscription } from 'rxjs'
import { firstOrAfter } from '../../streams/firstOrAfter'
import { BUSY_RETRY_PIECES, KICK_RETRY_MS, MAX_BUSY_RETRY_MS, RAREST_FIRST_COPIES, SEEDED_LOCK_MS } from '../limits'
import { REMOTE_CODES, type FileMetaData, type Leech, type PeerAddress, type PeerErrorReply, type PeerReply, type PeerRequest, type Probe } from '../protocol/messages'
import type { PageSource } from '../../streams/readPages'
import type { ClusterTable } from './clusterTable'
import { hasBit } from './picker'
import type { PieceLog } from './pieceLog'

/** A file this node can serve pieces of: complete (a share, a finished download) or partial (a download in progress). */
export interface ServedFile {
  meta: FileMetaData
  source: () => PageSource
  /** Throws when the file on disk no longer matches what was mapped. */
  checkSize: () => void
  /** Piece hashes (32 bytes each), once known and verified. */
  pieceHashes: () => Buffer | null
  /** Pieces held: null means all of them. */
  have: () => Uint8Array | null
  /** Pieces being fetched right now (a download in progress). */
  pending?: () => Uint8Array | null
  /** For a seeder: how often each piece was sent, to send every piece once before any twice. */
  sent?: SentCounts
  /** For a download in progress: its pieces in the order stored (answers watches). */
  log?: PieceLog
}

/**
 * What a node serves a file it shares as (an initial seeder): the whole file, every piece once
 * before any twice while it can (`SentCounts`, on `now`: virtual time in a simulation).
 * `Lp2pNode` and the simulator's `SimNode` both build their shared files' entries here.
 */
export function servedShare (meta: FileMetaData, source: () => PageSource, pieceHashes: () => Buffer | null, checkSize: () => void = () => {}, now?: () => number): ServedFile {
  return { meta, source, checkSize, pieceHashes, have: () => null, sent: new SentCounts(meta.pieces, now) }
}

/**
 * Per piece of a seeded file: how often it went out, when last, and how many never did. A piece
 * sent is locked (not sent again while some piece never went) for `lockMs` (SEEDED_LOCK_MS) after
 * each send; `now` is a monotonic clock in ms.
 */
export class SentCounts {
  readonly counts: Uint32Array
  private readonly lastSent: Float64Array
  unsent: number
  constructor (pieces: number, private readonly now: () => number = () => performance.now(), private readonly lockMs = SEEDED_LOCK_MS) {
    this.counts = new Uint32Array(pieces)
    this.lastSent = new Float64Array(pieces)
    this.unsent = pieces
  }

  /** Pieces locked now: sent within the lock, while some never went (null once every piece went out). */
  sentBits (): Uint8Array | null {
    if (this.unsent === 0) return null
    const bf = new Uint8Array(Math.ceil(this.counts.length / 8))
    const now = this.now()
    for (let i = 0; i < this.counts.length; i++) if (this.held(i, now)) bf[i >> 3] |= 0x80 >> (i & 7)
    return bf
  }

  /** Is piece `i` held back at `now`: sent, and last sent no longer ago than the lock? */
  private held (i: number, now: number): boolean { return this.counts[i] > 0 && now - this.lastSent[i] <= this.lockMs }

  /** Piece `i` went out (counted, no rule: a holder still downloading sends what it has). */
  note (i: number): void {
    if (this.counts[i]++ === 0) this.unsent--
    this.lastSent[i] = this.now()
  }

  /** Has piece `i` never gone out from here? (Likely a rare piece: it is let through a busy uplink.) */
  fresh (i: number): boolean { return this.counts[i] === 0 }

  /**
   * May piece `i` go out now? Yes if it never did, or if every piece already did once, or if the
   * asker knows no other holder of it (`copies` ≤ 1: only us) and it went out more than the lock
   * ago (the peers it went to did not pass it on to this asker).
   */
  take (i: number, copies?: number): boolean {
    const now = this.now()
    if (this.counts[i] > 0 && this.unsent > 0 && (this.held(i, now) || copies === undefined || copies > 1)) return false
    if (this.counts[i]++ === 0) this.unsent--
    this.lastSent[i] = now
    return true
  }
}

export interface ServeContext {
  file: (fileId: string) => ServedFile | undefined
  cluster: ClusterTable
  /** Reported when a served file turned out to have changed on disk. */
  onFileChanged?: (fileId: string, err: Error) => void
  /**
   * True while this node's upload queue is full (more queued than it can send in a short while):
   * piece requests are then declined with BUSY and the asker goes to another source, instead of
   * every leecher of a big swarm queueing seconds deep at the same seeder. `passes`: the request
   * may pass a busy uplink (`passesBusy`: a piece that never went out from here, or a starved
   * asker); a busy node lets those through a longer queue (FRESH_QUEUE_FACTOR), so new pieces
   * spread at once instead of waiting out the backlog, and no asker is left behind.
   */
  busy?: (passes: boolean) => boolean
  /** This node's upload cap, bytes/s (undefined: none): a BUSY says when to ask again (`busyWaitFor`). */
  uploadRate?: number
  /**
   * A peer downloading a file asked us about it and serves it too (`from` of a probe or cluster
   * query), at the address we see it at: our own download of that file may fetch from it.
   */
  onAsker?: (fileId: string, peer: PeerAddress) => void
}

/** A reply and, for pieces and hash lists, the bytes that follow it raw. */
export interface Outgoing {
  msg: PeerReply
  payload?: { source: PageSource, offset: number, length: number }
}

/**
 * What a BUSY from an uplink capped at `uploadRate` asks: wait BUSY_RETRY_PIECES of its piece
 * times before asking again (at most MAX_BUSY_RETRY_MS). Undefined without a cap.
 */
export function busyWaitMs (blockSize: number, uploadRate: number | undefined): number | undefined {
  if (uploadRate === undefined || !(uploadRate > 0) || !Number.isFinite(uploadRate) || !(blockSize > 0)) return undefined
  return Math.min(MAX_BUSY_RETRY_MS, Math.ceil(BUSY_RETRY_PIECES * blockSize * 1000 / uploadRate))
}

/**
 * The wait a BUSY to `m` asks for (`busyWaitMs`), in piece times of the file asked about (a hash
 * list is declined for the pieces queued: its wait is in piece times too); of the asker's block
 * size for a file not held here. Only piece requests and hash lists are ever declined. For
 * `PeerServer`, which declines before the file is looked up; `serveRequest` declines only a file
 * it holds, and counts in that file's piece time directly.
 */
export function busyWaitFor (m: PeerRequest, ctx: ServeContext): number | undefined {
  if (m.type !== 'leech' && m.type !== 'get_hashes') return undefined
  const f = ctx.file(m.type === 'leech' ? m.hash : m.fileId)
  return busyWaitMs(f?.meta.blockSize ?? (m.type === 'leech' ? m.blockSize : 0), ctx.uploadRate)
}

/** A BUSY reply, with how long to wait when the uplink is capped. */
export function busyReply (req: number, message: string, retryMs: number | undefined): PeerErrorReply {
  return retryMs === undefined ? { type: 'error', req, code: REMOTE_CODES.busy, message } : { type: 'error', req, code: REMOTE_CODES.busy, message, retryMs }
}

/** A BUSY for a request about `f`, with its piece time's wait when the uplink is capped. */
function busyFor (m: PeerRequest, f: ServedFile, ctx: ServeContext, message: string): Outgoing {
  return { msg: busyReply(m.req, message, busyWaitMs(f.meta.blockSize, ctx.uploadRate)) }
}

/** The connection a request came on: the neighbour's address as the socket saw it. */
export interface Remote { host: string }

const bufferSource = (b: Buffer): PageSource => ({ size: b.length, view: (o, l) => [b.subarray(o, o + l)] })

/**
 * A peer's answer to one request from a neighbour. Pure: looks things up in the context and
 * says what to send; the connection adapter streams the payload pages from the mapping.
 */
export function serveRequest (m: PeerRequest, ctx: ServeContext, remote: Remote = { host: '' }): Outgoing {
  const err = (code: string, message: string): Outgoing => ({ msg: { type: 'error', req: m.req, code, message } })
  switch (m.type) {
    case 'find_cluster': {
      const peers = ctx.cluster.peers(m.fileId)
      // the asker serves what it fetches: it joins this file's cluster, at the address we see it at
      // (a file served here: askers naming themselves for any id filled the table with junk rows)
      if (m.from !== undefined && remote.host !== '' && ctx.file(m.fileId) !== undefined) {
        const asker = { nodeId: m.from.nodeId, host: remote.host, port: m.from.port }
        ctx.cluster.add(m.fileId, asker)
        ctx.onAsker?.(m.fileId, asker)
      }
      return { msg: { type: 'cluster', req: m.req, fileId: m.fileId, peers: peers.filter((p) => p.nodeId !== m.from?.nodeId) } }
    }
    case 'get_hashes': {
      const f = ctx.file(m.fileId)
      const hashes = f?.pieceHashes() ?? null
      if (f === undefined || hashes === null) return err(REMOTE_CODES.notFound, 'piece hashes not held here')
      if (m.from + m.count > f.meta.pieces) return err(REMOTE_CODES.badRequest, 'hash range outside the file')
      // a busy uplink gives no hash list either: those who hold it spread it (see `PieceLog.gotHashes`)
      if (ctx.busy?.(false) === true) return busyFor(m, f, ctx, 'upload queue full: fetch the hash list from another peer')
      return { msg: { type: 'hashes', req: m.req, fileId: m.fileId, from: m.from, count: m.count }, payload: { source: bufferSource(hashes), offset: m.from * 32, length: m.count * 32 } }
    }
    case 'probe': {
      if (m.from !== undefined && remote.host !== '') ctx.onAsker?.(m.fileId, { nodeId: m.from.nodeId, host: remote.host, port: m.from.port })
      const f = ctx.file(m.fileId)
      if (f === undefined) return err(REMOTE_CODES.notFound, 'file not held here')
      const have = f.have()
      if (have === null) {
        const sent = f.sent?.sentBits() ?? null
        return { msg: sent === null ? { type: 'have', req: m.req, fileId: m.fileId, totalPieces: f.meta.pieces } : { type: 'have', req: m.req, fileId: m.fileId, totalPieces: f.meta.pieces, sent } }
      }
      const pending = f.pending?.() ?? null
      const msg: PeerReply = { type: 'have', req: m.req, fileId: m.fileId, totalPieces: f.meta.pieces, bitfield: Uint8Array.prototype.slice.call(have) }
      if (pending !== null) msg.pending = pending
      if (f.log !== undefined) msg.version = f.log.version
      if (f.pieceHashes() !== null) msg.hashes = true
      return { msg }
    }
    case 'leech': {
      const f = ctx.file(m.hash)
      if (f === undefined) return err(REMOTE_CODES.notFound, 'file not held here')
      if (m.size !== f.meta.size) return err(REMOTE_CODES.badRequest, `size ${m.size} is not the file's size`)
      const have = f.have()
      if (have !== null) {
        // a partial holder serves only pieces of the tracker's segmentation that it has verified
        if (m.blockSize !== f.meta.blockSize || !hasBit(have, m.offset / m.blockSize)) return err(REMOTE_CODES.notFound, 'piece not held here')
      }
      const index = m.offset / m.blockSize
      const known = m.blockSize === f.meta.blockSize && f.sent !== undefined
      if (ctx.busy?.(passesBusy(f, m)) === true) return busyFor(m, f, ctx, 'upload queue full: ask another peer')
      try {
        f.checkSize()
      } catch (e) {
        ctx.onFileChanged?.(m.hash, e as Error)
        return err(REMOTE_CODES.unavailable, 'file changed on disk')
      }
      // a seeder sends every piece once before any piece twice (the leechers spread the copies):
      // a piece already out is refused while some never went, and the asker fetches it from a peer
      // (for SEEDED_LOCK_MS after each send; then an asker that knows no other holder gets it)
      if (have === null && known && !(f.sent as SentCounts).take(index, m.copies)) {
        return err(REMOTE_CODES.seeded, 'piece already sent to a peer: fetch it there')
      }
      if (have !== null && known) (f.sent as SentCounts).note(index)
      const length = Math.min(m.blockSize, m.size - m.offset)
      const header: PeerReply = { type: 'piece', req: m.req, pieceSize: length, offset: m.offset, totalPieces: m.pieces, clusterName: m.hash }
      // a holder still downloading says what it holds now: its askers learn its new pieces at once
      if (have !== null && m.pieces === f.meta.pieces) header.bitfield = Uint8Array.prototype.slice.call(have)
      return { msg: header, payload: { source: f.source(), offset: m.offset, length } }
    }
    default: {
      const never: never = m
      return err(REMOTE_CODES.badRequest, `unknown request ${(never as { type: string }).type}`)
    }
  }
}

/**
 * This node's uplink went idle: each partial download it serves tells a few of the watches it
 * holds that lack one of its pieces (see `PieceLog.kick`), so they ask for it. Returns how many
 * were told (the adapter kicks again KICK_RETRY_MS later while its uplink stays idle).
 */
export function kickWatches (files: Iterable<ServedFile>): number {
  let told = 0
  for (const f of files) {
    if (f.log === undefined) continue
    const have = f.have()
    if (have !== null) told += f.log.kick(have)
  }
  return told
}

/**
 * Keeps an idle uplink fed from the watches it holds: `poke()` when the uplink went idle or a piece
 * was stored; while `idle()` holds, it kicks the held watches (`kickWatches`), and again every
 * KICK_RETRY_MS as long as a kick told someone (a watch told may have wanted nothing after all).
 * The loop ends when the uplink is busy again or no held watch lacks anything held here.
 */
export class WatchKicker {
  private retry: Subscription | null = null
  constructor (private readonly files: () => Iterable<ServedFile>, private readonly idle: () => boolean, private readonly scheduler: SchedulerLike, private readonly retryMs = KICK_RETRY_MS) {}

  poke (): void { if (this.retry === null) this.kick() }

  /** Watches told so far. */
  told = 0

  private kick (): void {
    this.retry = null
    if (!this.idle()) return
    const n = kickWatches(this.files())
    this.told += n
    if (n > 0) this.retry = this.scheduler.schedule(() => this.kick(), this.retryMs)
  }

  close (): void { this.retry?.unsubscribe(); this.retry = null }
}

/**
 * Where a piece request stands in this node's upload queue: lower goes first. The fewest copies
 * the asker knows of first (a piece new in the swarm is passed on at once, not behind common ones),
 * counted up to RAREST_FIRST_COPIES; a request that does not say is counted as common.
 */
export function sendPriority (m: Leech): number {
  return Math.min(m.copies ?? RAREST_FIRST_COPIES, RAREST_FIRST_COPIES)
}

/** Is this request for a piece that never went out from here (of this file's segmentation)? */
export function freshPiece (f: ServedFile, m: Leech): boolean {
  return f.sent !== undefined && m.size === f.meta.size && m.blockSize === f.meta.blockSize && f.sent.fresh(m.offset / m.blockSize)
}

/**
 * May this piece request pass a busy uplink (a queue up to FRESH_QUEUE_FACTOR × the usual)? A
 * fresh piece may (new pieces spread at once), and so may an asker that says it is starved (no
 * node is left behind: the last to finish sets the swarm's time). An asker that always claims to
 * be starved gains a queue twice as deep at most.
 */
export function passesBusy (f: ServedFile, m: Leech): boolean {
  return m.starved === true || freshPiece(f, m)
}

/**
 * The answer to a probe that may be a watch (`since` given): at once when there is news for the
 * asker (a piece it lacks stored after `since`, or the hash list it `needHashes`), when the file is
 * complete or unknown here, or when the request is not a watch; otherwise when such news comes,
 * or after `waitMs`.
 * Pure: the wait runs on `scheduler`; the adapter sends what this emits (once) and unsubscribes
 * when the connection goes or the asker sends a newer watch.
 */
export function serveWatch (m: Probe, ctx: ServeContext, scheduler: SchedulerLike, remote: Remote = { host: '' }): Observable<Outgoing> {
  if (m.since === undefined) return of(serveRequest(m, ctx, remote))
  if (m.from !== undefined && remote.host !== '') ctx.onAsker?.(m.fileId, { nodeId: m.from.nodeId, host: remote.host, port: m.from.port })
  const { from: _told, ...probe } = m
  const now = (): Outgoing => serveRequest(probe, ctx, remote)
  const f = ctx.file(m.fileId)
  const log = f?.log
  if (f === undefined || log === undefined || f.have() === null) return of(now())
  const lacks = m.lacks ?? new Uint8Array(0)
  if (lacks.length !== Math.ceil(f.meta.pieces / 8)) {
    return of({ msg: { type: 'error', req: m.req, code: REMOTE_CODES.badRequest, message: 'lacks does not match the file\'s pieces' } })
  }
  const needHashes = m.needHashes === true
  if (log.newSince(m.since, lacks) || (needHashes && f.pieceHashes() !== null)) return of(now())
  return firstOrAfter(log.newsIn(lacks, needHashes), m.waitMs ?? 0, scheduler).pipe(map(now))
}
