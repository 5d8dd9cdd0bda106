import { createHash } from 'node:crypto'
import {
  asyncScheduler, catchError, concat, concatMap, defaultIfEmpty, defer, EMPTY, filter, finalize, from, ignoreElements, last, map, merge, mergeMap, Observable, of,
  repeat, Subject, type Subscriber, type Subscription, switchMap, take, takeUntil, tap, throwError, timeout, timer, toArray, type SchedulerLike,
} from 'rxjs'
import { ConnectionClosedError, HashMismatchError, NoSourcesError, PeerTimeoutError, ProtocolError, RemoteError, StorageError } from '../errors'
import { BUSY_MAX_DOUBLINGS, BUSY_RETRY_MS, DISCOVERY_BATCH_MS, FAN_OUT, IN_FLIGHT_MS, MAX_BUSY_RETRY_MS, MAX_PIPELINE, MAX_SOURCES, MIN_PIPELINE, NO_PROGRESS_MS, PIECE_TIMEOUT_MS, PIPELINE_BYTES, QUERY_TIMEOUT_MS, RAREST_FIRST_COPIES, REPROBE_MS, SOURCE_SWAP_AGE_MS, STALL_FACTOR, STALL_MIN_MS, WATCH_MS } from '../limits'
import { MAX_HASHES_PER_FRAME, REMOTE_CODES, type FileMetaData, type FindCluster, type Leech, type NodeInfo, type PeerAddress, peerKey, type Probe } from '../protocol/messages'
import type { Frame } from '../protocol/frames'
import type { PeerLink } from '../net/peerConnection'
import { batchWithin } from '../../streams/batchWithin'
import { fanOutQuery, isAnswer } from '../../streams/fanOutQuery'
import { KeyedSignal } from '../../streams/keyedSignal'
import { leechPieces } from '../../streams/leechPieces'
import { writeSink, type PositionalWriter } from '../../streams/writeSink'
import { PaceMeter } from './pace'
import { PiecePicker } from './picker'
import { resolveFile } from './resolve'

/** Where a download's pieces go (a .part file in production, memory in tests). */
export interface PieceSink extends PositionalWriter {
  /** Pieces already stored and verified by an earlier run (resume), as piece indexes. */
  readonly present?: number[]
  /** Tell the sink a piece is stored (after its write completed). The sink owns `data` from here on. */
  stored: (offset: number, data: Buffer) => void
  /** Whole-file SHA-256 of what was stored. */
  digest: () => Observable<string>
  /** Make the verified file visible under its final name; returns where. */
  commit: () => string
  /** Give up without committing (the partial file stays for resume). */
  close: () => void
  /** The stored pieces did not hash to the file: do not resume from them. */
  discardState?: () => void
  /**
   * Check what is stored as it is now (each stored piece against its hash, or the whole file
   * against its id when there are none), forget the pieces that fail (a resume keeps the rest)
   * and emit how many did: after the file hashed right (did the disk keep it?), and after it did
   * not (which pieces from an earlier run went bad?).
   */
  verifyStored?: (pieceHashes: Buffer | null) => Observable<number>
  /** Where piece hashes are computed for this download, when the sink has a better place (a worker). It may hand back another buffer with the same bytes. */
  readonly hashPiece?: (data: Buffer) => Observable<{ digest: Buffer, data: Buffer }>
}

/** Something that rations bytes (a token bucket): `take(n)` emits once when n bytes may go (lower `priority` first, if it orders its waiters). */
export interface ByteBudget {
  take: (n: number, priority?: number) => Observable<unknown>
  /** Gives back what a request took when it was declined (no byte of it came). */
  give?: (n: number) => void
}

export interface LeechDeps {
  tracker: {
    files: () => Observable<FileMetaData[]>
    nodes: (fileId: string) => Observable<NodeInfo[]>
  }
  /** A (cached) link to a peer. */
  link: (peer: PeerAddress) => PeerLink
  /**
   * This download no longer needs its link to `peer` (no source of it: a probe or cluster query
   * failed, no room for it, dropped, swapped out): the connection may close. Peers a hostile neighbour names by the hundred would otherwise each
   * keep a socket open until the download ends.
   */
  unlink?: (peer: PeerAddress) => void
  openSink: (meta: FileMetaData) => PieceSink
  /**
   * Where a verified copy of the file already is at its final place (its SHA-256 is the id), or
   * null: with one, nothing is fetched and the download is done at once (`downloaded` 0). A get
   * run again, over names part of which it fetched before, was refused for those (their names
   * were taken).
   */
  alreadyHere?: (meta: FileMetaData) => Observable<string | null>
  scheduler?: SchedulerLike
  /**
   * This node's id (never a source for itself) and, when it serves, its port: neighbours add it to
   * their cluster tables. A function when the id may change during the download (a node told its
   * id is in use takes a new one): read at each use.
   */
  selfId?: string | (() => string)
  selfPort?: number
  /** SHA-256 of one piece, when the sink has no place of its own for it. Default: in this thread. */
  hashPiece?: (data: Buffer) => Observable<Buffer>
  /** Download cap. */
  budget?: ByteBudget
  /** Random source for piece tie-breaks (seeded in simulations). */
  random?: () => number
  /** Peers that asked this node about the file (they download it too): candidate sources. */
  askers?: Observable<PeerAddress>
  /** Told, once, how to read which pieces this download is fetching (a node puts them in its `have` replies). */
  onPending?: (pending: () => Uint8Array) => void
}

export interface LeechOptions {
  fanOut?: number
  queryTimeoutMs?: number
  pieceTimeoutMs?: number
  pipeline?: number
  maxSources?: number
  /** How often the cluster is looked up and probed again (new peers, fresher bitfields). */
  rediscoverMs?: number
  /** How often a source that does not answer watches (an older peer) is probed for its bitfield. */
  reprobeMs?: number
  /** How long a watched source may hold its answer when it has no news for us (WATCH_MS). */
  watchMs?: number
  /** How long to wait with no usable source before giving up. */
  noSourceGraceMs?: number
  /**
   * Give up when no piece (nor the hash list) was stored for this long while no request waited
   * for this download's own cap: the sources decline everything (NO_PROGRESS_MS; 0 or Infinity:
   * never).
   */
  noProgressMs?: number
  /** Bad pieces from one peer before it is banned for this download. */
  maxStrikes?: number
  /** How much of a source's measured rate is kept in flight (IN_FLIGHT_MS). */
  inFlightMs?: number
  /** Requests in flight to a source whose rate is not measured yet (default 1). */
  startWindow?: number
  /** A source that answered BUSY is asked again after this long (BUSY_RETRY_MS). */
  busyRetryMs?: number
  /** With its sources full, a download swaps out its least useful source each round once it has used it this long (SOURCE_SWAP_AGE_MS; Infinity: never). */
  sourceSwapAgeMs?: number
}

const label = (p: PeerAddress): string => `${p.host}:${p.port}`
/** A source's key (see peerKey), made once. */
const idOf = (s: Source): string => (s.key ??= peerKey(s.peer))

export type LeechEvent =
  | { event: 'start', fileId: string, name: string, size: number, blockSize: number, pieces: number, present: number }
  | { event: 'peers', neighbours: number, cluster: number, sources: number }
  | { event: 'hashes', pieceHashes: Buffer, from: string }
  | { event: 'piece', index: number, bytes: number, peer: string }
  | { event: 'piece-failed', index: number, peer: string, reason: string }
  | { event: 'peer-dropped', peer: string, code: string, error: string }
  | { event: 'done', fileId: string, name: string, path: string, bytes: number, sha256: string, downloaded: number }
  /** Stored pieces failed the final check and were forgotten: the download goes on to fetch them again (a `start` follows). */
  | { event: 'refetch', pieces: number, reason: string }

/**
 * Fetch one file, as a stream of events ending in `done`: query files → resolve the name →
 * then `leechFile`. Unsubscribing stops everything and leaves the partial file for resume.
 */
export function leech (query: string, deps: LeechDeps, opts: LeechOptions = {}): Observable<LeechEvent> {
  return deps.tracker.files().pipe(
    map((files) => resolveFile(files, query)),
    mergeMap((meta) => (deps.alreadyHere?.(meta) ?? of(null)).pipe(
      mergeMap((path): Observable<LeechEvent> => path === null ? leechFile(meta, deps, opts) : of<LeechEvent[]>(
        { event: 'start', fileId: meta.hash, name: meta.name, size: meta.size, blockSize: meta.blockSize, pieces: meta.pieces, present: meta.pieces },
        { event: 'done', fileId: meta.hash, name: meta.name, path, bytes: meta.size, sha256: meta.hash, downloaded: 0 },
      )),
    )),
  )
}

const localHash = (data: Buffer): Observable<Buffer> => defer(() => of(createHash('sha256').update(data).digest()))

interface Source { peer: PeerAddress, /** see peerKey */ key?: string, bitfield: Uint8Array | null, pending?: Uint8Array, sent?: Uint8Array, version?: number, hashes?: boolean, /** when it became a source */ since?: number }

/** A known source's fresh answer: what it holds now. */
function refresh (known: Source, s: Source): void {
  known.bitfield = s.bitfield; known.sent = s.sent; known.version = s.version; known.hashes = s.hashes
}

/**
 * The swarm download of one known file. Every `rediscoverMs` the cluster is rebuilt
 * (bootstrap from the tracker → cluster fan-out to neighbours, each with its own timeout →
 * probe): new peers become sources, known ones get fresher bitfields. Each source runs its own
 * leech loop (an `expand` over offsets handed out rarest-first by the picker) and, when it has
 * nothing left to give, watches it: the source answers as soon as it stores a piece we lack.
 * Peers that ask this node about the file become sources too. Pieces are checked against hashes verified
 * against the tracker's root; a bad piece is fetched elsewhere and a peer that sends
 * `maxStrikes` of them is banned. A silent or failing peer is dropped ("doesn't matter, move on").
 * Once every piece is stored, the whole-file hash must equal the file id before `done`.
 */
export function leechFile (meta: FileMetaData, deps: LeechDeps, opts: LeechOptions = {}): Observable<LeechEvent> {
  const scheduler = deps.scheduler ?? asyncScheduler
  const pieceTimeoutMs = opts.pieceTimeoutMs ?? PIECE_TIMEOUT_MS
  const pipeline = opts.pipeline ?? Math.max(MIN_PIPELINE, Math.min(MAX_PIPELINE, Math.floor(PIPELINE_BYTES / meta.blockSize)))
  const maxSources = opts.maxSources ?? MAX_SOURCES
  const maxStrikes = opts.maxStrikes ?? 3
  const rediscoverMs = opts.rediscoverMs ?? 1000
  const graceMs = opts.noSourceGraceMs ?? 3000
  const noProgressMs = opts.noProgressMs === 0 ? Infinity : opts.noProgressMs ?? NO_PROGRESS_MS

  return new Observable<LeechEvent>((sub) => {
    const sink = deps.openSink(meta)
    const pieceDigest = sink.hashPiece ?? ((data: Buffer) => (deps.hashPiece ?? localHash)(data).pipe(map((digest) => ({ digest, data }))))
    const picker = new PiecePicker(meta.pieces, { random: deps.random })
    deps.onPending?.(() => picker.inFlightBits())
    const reprobeMs = opts.reprobeMs ?? REPROBE_MS
    const watchMs = opts.watchMs ?? WATCH_MS
    const selfId = typeof deps.selfId === 'function' ? deps.selfId : () => deps.selfId as string | undefined
    const notSelf = (p: PeerAddress): boolean => p.nodeId !== selfId()
    /** The holders the tracker gave that this download asks (for their cluster, or the hash list). */
    const neighboursOf = (nodes: NodeInfo[]): NodeInfo[] => nodes.filter(notSelf).slice(0, opts.fanOut ?? FAN_OUT)
    // this node serves what it fetches: those it asks may fetch from it in turn (under the id it
    // has now: the messages are made again when it changes)
    let madeFor: string | undefined
    let probe: Omit<Probe, 'req'> = { type: 'probe', fileId: meta.hash }
    let findCluster: Omit<FindCluster, 'req'> = { type: 'find_cluster', fileId: meta.hash }
    const asSelf = (): void => {
      const id = selfId()
      if (id === madeFor || deps.selfPort === undefined || id === undefined) return
      madeFor = id
      const from = { nodeId: id, port: deps.selfPort }
      probe = { type: 'probe', fileId: meta.hash, from }
      findCluster = { type: 'find_cluster', fileId: meta.hash, from }
    }
    asSelf()
    const timeoutMs = opts.queryTimeoutMs ?? QUERY_TIMEOUT_MS
    // per source: its rate, measured over the pieces that land, sets how many requests it gets
    const rates = new Map<string, { since: number, bytes: number, rate: number }>()
    const roundBytes = new Map<string, number>() // per source, since the last discovery round
    const landedFrom = (id: string, bytes: number): void => {
      roundBytes.set(id, (roundBytes.get(id) ?? 0) + bytes)
      const now = scheduler.now()
      const r = rates.get(id) ?? { since: now, bytes: 0, rate: 0 }
      r.bytes += bytes
      const dt = now - r.since
      if (dt >= 100) {
        const sample = r.bytes * 1000 / dt
        r.rate = r.rate === 0 ? sample : 0.5 * r.rate + 0.5 * sample
        r.bytes = 0; r.since = now
      }
      rates.set(id, r)
    }
    const inFlightMs = opts.inFlightMs ?? IN_FLIGHT_MS
    const startWindow = opts.startWindow ?? 1
    const windowOf = (id: string): number => {
      const rate = rates.get(id)?.rate ?? 0
      if (rate === 0) return startWindow // unknown yet: one, then what it earns
      return Math.max(1, Math.ceil(rate * inFlightMs / 1000 / meta.blockSize))
    }
    // a source whose rate is known is given STALL_FACTOR times what a piece should take from it
    // (behind the rest of its window), at least STALL_MIN_MS: one that went silent (a partition, a
    // wedged process) is dropped in seconds, not after pieceTimeoutMs, and its pieces go elsewhere
    const stallMs = (id: string, bytes: number): number => {
      const rate = rates.get(id)?.rate ?? 0
      if (rate === 0) return pieceTimeoutMs
      return Math.min(pieceTimeoutMs, Math.max(STALL_MIN_MS, STALL_FACTOR * (windowOf(id) + 1) * bytes * 1000 / rate))
    }
    // a source that said BUSY is not asked again for a short while (its queue drains meanwhile)
    const pausedUntil = new Map<string, number>()
    const busyStreak = new Map<string, number>()
    const busyRetryMs = opts.busyRetryMs ?? BUSY_RETRY_MS
    const paused = (id: string): boolean => (pausedUntil.get(id) ?? 0) > scheduler.now()
    // the pause doubles with each BUSY in a row (a peer that stays busy is not polled every few ms
    // by each of its askers), up to 2^BUSY_MAX_DOUBLINGS times; a piece that lands resets it
    // (but not while this download is starved: see STARVED_SHARE)
    const pace = new PaceMeter()
    // (a holder behind an upload cap says how long: some of its piece times, see BUSY_RETRY_PIECES)
    const pauseBusy = (id: string, askedMs?: number): void => {
      const streak = pace.starved(scheduler.now()) ? 0 : Math.min(BUSY_MAX_DOUBLINGS, busyStreak.get(id) ?? 0)
      busyStreak.set(id, streak + 1)
      const base = Math.max(busyRetryMs, askedMs ?? 0)
      pausedUntil.set(id, scheduler.now() + Math.min(MAX_BUSY_RETRY_MS, base * 2 ** streak))
    }
    const resumeIn = (id: string): number => { const p = (pausedUntil.get(id) ?? 0) - scheduler.now(); return p > 0 ? Math.min(rediscoverMs, p) : rediscoverMs }
    for (const i of sink.present ?? []) picker.markDone(i)
    const sources = new Map<string, Source>() // live sources by peerKey
    const addSource = (s: Source): void => { s.since = scheduler.now(); sources.set(idOf(s), s) }
    // bans and strikes go by address, not by id: a peer that sends bad pieces under one id after
    // another (a new id for each ban: 195 of them sent 2.3 times the file in junk) is one peer
    const banned = new Set<string>()
    const isBanned = (id: string): boolean => banned.has(addressOfKey(id))
    const swappedOut = new KeyedSignal<string>() // ends a source's loop: it made room for another
    // a dropped peer is asked again only after a cool-down that doubles with each failure (it may
    // have restarted: transient failures heal, broken peers cost little)
    const cooling = new Map<string, { until: number, failures: number, lost?: boolean }>()
    const coolingDown = (id: string): boolean => (cooling.get(id)?.until ?? -Infinity) > scheduler.now()
    /** A peer that held something we lack and whose connection failed (closed, silent) for the first time, that will be asked again later. */
    const someCooling = (now: number): boolean => {
      for (const [id, c] of cooling) if (c.failures === 1 && c.lost === true && c.until > now && !isBanned(id)) return true
      return false
    }
    // not to be asked now: banned for bad pieces, or cooling down after a failure or a swap
    const shunned = (id: string): boolean => isBanned(id) || coolingDown(id)
    const strikes = new Map<string, number>()
    const landed = new KeyedSignal<number>() // piece i stored: other fetches of it stop
    const complete$ = new Subject<void>()
    // wakes idle sources: all of them (null), one source (its id: it has news), or those holding a
    // piece that went back (its index)
    const idleSources = new KeyedSignal<string>()
    const wake = (w: string | number | null): void => {
      if (w === null) idleSources.fireAll()
      else if (typeof w === 'string') idleSources.fire(w)
      else idleSources.fireWhere((id) => picker.holds(id, w))
    }
    let pieceHashes: Buffer | null = null
    let hashesFrom = ''
    // the last time a piece or the hash list was stored, and requests waiting for our own
    // download cap (meanwhile no peer is at fault for a slow download): see noProgressMs
    let progressAt = scheduler.now()
    let budgetWaits = 0
    let downloaded = 0

    const events = new Subject<LeechEvent>()
    const emit = (e: LeechEvent): void => events.next(e)

    // ------------------------------------------------------------ hash list, checked against the root
    // one source at a time is asked (news that several sources got the list wakes them together);
    // when that ask fails, the others are woken to try
    let askingHashes = false
    // peers whose hash list did not match the tracker's root (said when the download gives up: the
    // tracker's entry, not the peers, may be what is wrong)
    const rootDisputed = new Set<string>()
    // pieces can be checked: the list is here, or there is none to check against
    const hashesKnown = (): boolean => pieceHashes !== null || meta.root === undefined || meta.pieces === 0
    const fetchHashes = (src: Source): Observable<never> => defer(() => {
      if (hashesKnown() || askingHashes) return EMPTY
      askingHashes = true
      const pages = Math.ceil(meta.pieces / MAX_HASHES_PER_FRAME)
      return from(Array.from({ length: pages }, (_, p) => p * MAX_HASHES_PER_FRAME)).pipe(
        mergeMap((first) => deps.link(src.peer).request({ type: 'get_hashes', fileId: meta.hash, from: first, count: Math.min(MAX_HASHES_PER_FRAME, meta.pieces - first) }).pipe(
          timeout({ first: opts.queryTimeoutMs ?? QUERY_TIMEOUT_MS, scheduler, with: () => throwError(() => new PeerTimeoutError(label(src.peer), 'get_hashes')) }),
        ), 1),
        toArray(),
        tap((frames) => {
          if (pieceHashes !== null) return
          const all = Buffer.concat(frames.map((f) => f.payload ?? Buffer.alloc(0)))
          const root = createHash('sha256').update(all).digest('hex')
          if (all.length !== meta.pieces * 32 || root !== meta.root) {
            rootDisputed.add(idOf(src))
            throw new ProtocolError(`peer ${label(src.peer)} sent piece hashes that do not match the root`)
          }
          pieceHashes = all
          progressAt = scheduler.now()
          hashesFrom = label(src.peer)
          emit({ event: 'hashes', pieceHashes: all, from: hashesFrom })
          // sources that waited for a way to check pieces (after this one, which goes on at once)
          scheduler.schedule(() => wake(null))
        }),
        ignoreElements(),
        finalize(() => { askingHashes = false; if (pieceHashes === null) scheduler.schedule(() => wake(null)) }),
      )
    })

    // a source still downloading gives the hash list if it says it holds it, or if it holds pieces
    // we lack (it serves pieces only once it has verified the list)
    // (not one that declined to give it lately: it may say it holds the list and refuse it every
    // time, and while it was counted as the one to ask, the seeder never was and the download
    // stalled, asking it a thousand times a second)
    const hashesDeclined = new Map<string, number>()
    const canGiveHashes = (s: Source): boolean => s.bitfield !== null && (s.hashes === true || picker.useful(idOf(s))) && (hashesDeclined.get(idOf(s)) ?? -Infinity) <= scheduler.now()
    const partialCanGiveHashes = (): boolean => {
      for (const s of sources.values()) if (canGiveHashes(s)) return true
      return false
    }

    // ------------------------------------------------------------ one piece from one source
    // Ask `src` for piece `index` and store it once its hash checks out. Completes when the piece
    // is stored (by this fetch or by another source's: the endgame's duplicates stop there), or
    // when the source declined it (BUSY, SEEDED: not its fault; it goes back); errors when the
    // source failed (silent past its stall time, an unasked-for frame, too many bad pieces) or the
    // disk did. Whatever ends it, a piece not stored goes back to the picker. Events go out
    // through `emit`.
    //
    // One hand-written subscriber, not a pipe (budget → timeout → catchError → map → two
    // mergeMaps → takeUntil → finalize): a swarm makes this call for every piece request, and in
    // a simulated one of thousands of nodes those operators' objects were a large part of the
    // garbage. Its steps, in order: the request (after the download budget, if any) with a stall
    // deadline, the frame's checks, the piece's hash, the write.
    const fetchPiece = (src: Source, index: number): Observable<number> => new Observable<number>((sub) => {
      const id = idOf(src)
      const offset = index * meta.blockSize
      const expected = Math.min(meta.blockSize, meta.size - offset)
      let ask: Subscription | undefined
      let hashing: Subscription | undefined
      let writing: Subscription | undefined
      let deadline: Subscription | undefined
      // a piece stored (by another source in the endgame, or by this fetch) ends this fetch
      const offLanded = landed.on(index, () => sub.complete())
      // (a step's callback that throws ends the fetch with that error, as an operator would: each
      // callback a step calls is guarded, and the functions below run inside one)
      const guard = <A>(f: (a: A) => void) => (a: A): void => { try { f(a) } catch (err) { sub.error(err) } }
      const store = (data: Buffer): void => {
        if (picker.isDone(index)) { sub.complete(); return } // another source won the race
        writing = of({ position: offset, data }).pipe(writeSink(sink, 1)).subscribe({
          next: guard((c: { position: number, data: Buffer }) => {
            if (picker.isDone(index)) return
            const bytes = c.data.length // the sink owns the buffer once stored (it may move it to a worker)
            // (whatever the sink throws is ours, never the peer's fault: the download stops with it)
            try { sink.stored(c.position, c.data) } catch (err) { throw err instanceof StorageError ? err : new StorageError(`storing piece ${index}: ${(err as Error).message}`, err) }
            picker.done(id, index)
            progressAt = scheduler.now()
            busyStreak.delete(id)
            pace.land(scheduler.now())
            landedFrom(id, bytes)
            downloaded += bytes
            emit({ event: 'piece', index, bytes, peer: label(src.peer) })
            landed.fire(index) // ends this fetch and cancels duplicates
            if (picker.complete) complete$.next()
            // in the endgame an idle source may take a copy of a piece still in flight elsewhere
            if (picker.missing === 0 && !picker.complete) wake(null)
          }),
          error: (err: unknown) => sub.error(err),
          complete: () => sub.complete(),
        })
      }
      const checked = ({ data, ok }: { data: Buffer, ok: boolean }): void => {
        if (ok) { store(data); return }
        picker.release(id, index, true) // fetched elsewhere, never again from this peer
        const at = addressOfKey(id)
        const n = (strikes.get(at) ?? 0) + 1
        strikes.set(at, n)
        emit({ event: 'piece-failed', index, peer: label(src.peer), reason: 'hash mismatch' })
        if (n >= maxStrikes) { banned.add(at); sub.error(new ProtocolError(`peer ${label(src.peer)} sent ${n} bad pieces: banned`)); return }
        sub.complete()
      }
      const answered = guard((f: Frame): void => {
        deadline?.unsubscribe()
        const m = f.msg
        if (m.type !== 'piece' || m.offset !== offset || m.pieceSize !== expected || m.clusterName !== meta.hash || f.payload?.length !== expected) {
          throw new ProtocolError(`peer ${label(src.peer)} sent a piece that was not asked for`)
        }
        if (m.bitfield !== undefined && m.totalPieces === meta.pieces) picker.addHave(id, m.bitfield)
        const data = f.payload
        const hashes = pieceHashes
        if (hashes === null) { checked({ data, ok: true }); return }
        let hashed = false
        hashing = pieceDigest(data).subscribe({
          next: guard((h: { digest: Buffer, data: Buffer }) => { if (!hashed) { hashed = true; checked({ data: h.data, ok: h.digest.equals(hashes.subarray(index * 32, index * 32 + 32)) }) } }),
          error: (err: unknown) => sub.error(err),
          complete: () => { if (!hashed) sub.complete() },
        })
      })
      const refused = guard((err: unknown): void => {
        // a busy peer (not at fault either): the piece goes back for another holder, and this
        // peer is asked again after a short pause (waiting for its next probe left uplinks idle)
        if (err instanceof RemoteError && err.remoteCode === REMOTE_CODES.busy) {
          declined()
          pauseBusy(id, err.retryMs)
          picker.release(id, index)
          wake(index)
          sub.complete()
          return
        }
        // a seeder that already sent this piece to someone: get it from a peer (not a failure)
        if (err instanceof RemoteError && err.remoteCode === REMOTE_CODES.seeded) { declined(); picker.decline(id, index); wake(index); sub.complete(); return }
        sub.error(err)
      })
      // (with how many of our sources hold it, up to what a holder looks at: it sends the rarest of
      // its queue first; and whether this download is starved: a busy holder lets it through)
      const request: Omit<Leech, 'req'> = { type: 'leech', hash: meta.hash, size: meta.size, offset, blockSize: meta.blockSize, pieces: meta.pieces, copies: Math.min(picker.askCopies(index), RAREST_FIRST_COPIES) }
      if (pace.starved(scheduler.now())) request.starved = true
      const ask$ = deps.link(src.peer).request(request)
      let replied = false
      // the deadline runs from the request's sending: a wait for our own download budget is not
      // the peer's fault (behind a low cap a piece waits longer than a peer may take to send it)
      // (one closure per fetch, as before the budget case: this runs for every piece request)
      const timedOut = (): void => {
        ask?.unsubscribe()
        sub.error(new PeerTimeoutError(label(src.peer), `piece ${index}`))
      }
      const budget = deps.budget
      let budgetWait = budget !== undefined
      if (budgetWait) budgetWaits++
      const budgetGiven = (): void => { if (budgetWait) { budgetWait = false; budgetWaits-- } }
      // a declined request brought no byte: what it took from the download cap goes back (kept, each
      // BUSY cost a capped download a piece time of its cap)
      const declined = (): void => { if (budget !== undefined && !budgetWait) budget.give?.(expected) }
      ask = (budget === undefined ? ask$ : budget.take(expected).pipe(take(1), switchMap(() => {
        budgetGiven()
        if (!sub.closed && !replied && deadline === undefined) deadline = scheduler.schedule(timedOut, stallMs(id, expected))
        return ask$
      }))).subscribe({
        next: (f) => { if (!replied) { replied = true; answered(f) } },
        error: refused,
        complete: () => { if (!replied) sub.complete() },
      })
      if (budget === undefined && !sub.closed && !replied) deadline = scheduler.schedule(timedOut, stallMs(id, expected))
      return () => {
        budgetGiven()
        offLanded()
        deadline?.unsubscribe()
        ask?.unsubscribe()
        hashing?.unsubscribe()
        writing?.unsubscribe()
        if (!picker.isDone(index)) picker.release(id, index)
      }
    })

    // ------------------------------------------------------------ one source's loop
    const runSource = (src: Source): Observable<never> => {
      const id = idOf(src)
      // the hash list comes from a source still downloading that holds it; a complete holder (a
      // seeder: the swarm's scarcest uplink) is asked only while no such source is known. One that
      // has no list is not at fault (another source will have it); a busy one is asked again after
      // a pause (meanwhile the watches below hear when another source gets the list)
      const hashes$ = defer(() => {
        if (hashesKnown()) return EMPTY
        const ask = src.bitfield === null ? picker.useful(id) && !partialCanGiveHashes() : canGiveHashes(src)
        return ask ? fetchHashes(src) : EMPTY
      }).pipe(
        catchError((err: unknown) => {
          // a source still downloading that declines is not asked for the list for a while (others are)
          const declined = (ms: number): void => { if (src.bitfield !== null) hashesDeclined.set(id, scheduler.now() + ms) }
          if (err instanceof RemoteError && err.remoteCode === REMOTE_CODES.notFound) { declined(5 * rediscoverMs); return EMPTY }
          if (err instanceof RemoteError && err.remoteCode === REMOTE_CODES.busy) { declined(Math.max(rediscoverMs, err.retryMs ?? 0)); pauseBusy(id, err.retryMs); return EMPTY }
          throw err
        }),
      )
      // a source still downloading that has nothing for us now is watched: it answers when it
      // stores a piece we lack (one watch out at a time; its news wakes this source's loop)
      // (the flag is cleared before the news is acted on: the loop it wakes may go idle again at
      // once, and must be able to send the next watch)
      // (one subscriber per watch, not defer → timeout → mergeMap → finalize: a swarm sends one
      // for every rest of every source)
      let watching = false
      // watch answers in a row that named no piece this download lacks: past USELESS_WATCHES, the
      // next watch waits reprobeMs (a peer answering every watch at once with nothing, 10,000 a
      // second, kept a get's CPU busy)
      let useless = 0
      let watchTo: Subscriber<never> | null = null // watch$'s subscriber, while it is subscribed
      const open = new Set<() => void>() // what ends each watch still out
      const sendWatch = (): void => {
        const to = watchTo
        if (to === null || watching) return
        if (src.bitfield === null || picker.complete || sources.get(id) !== src) return
        watching = true
        let out = true
        const over = (): void => { if (out) { out = false; watching = false } }
        let reply: Subscription | undefined
        let deadline: Subscription | undefined
        let reprobe: Subscription | undefined
        const end = (): void => { open.delete(end); over(); deadline?.unsubscribe(); reply?.unsubscribe(); reprobe?.unsubscribe() }
        open.add(end)
        let answered = false
        // (without a hash list, it also answers as soon as it holds one; not once it said it does:
        // while a list is on its way from another source, that watch would be answered at once,
        // again and again)
        asSelf()
        const w = { ...probe, since: src.version ?? 0, lacks: picker.wantBits(), waitMs: watchMs }
        reply = deps.link(src.peer).request(hashesKnown() || src.hashes === true ? w : { ...w, needHashes: true }).subscribe({
          next: (f) => {
            if (answered) return
            answered = true
            deadline?.unsubscribe()
            const s = toSource(src.peer, f, meta)
            useless = s !== null && (s.bitfield === null || intersects(s.bitfield, w.lacks)) ? 0 : useless + 1
            // a peer that does not know watches answers at once: its next watch waits a while; so
            // does one whose answers keep bringing nothing
            const hold = s === null || s.version === undefined || useless > USELESS_WATCHES
            if (!hold) over()
            if (s !== null && sources.get(id) === src) {
              refresh(src, s)
              picker.setSource(id, s.bitfield, s.pending, s.sent)
              wake(id)
            }
            if (hold) reprobe = scheduler.schedule(() => { end(); wake(id) }, reprobeMs)
          },
          // (watch$ errors: the source is dropped, and its teardown ends this watch)
          error: (err: unknown) => to.error(err),
          complete: () => { if (reprobe === undefined) end() },
        })
        if (!answered && out) {
          deadline = scheduler.schedule(() => { reply?.unsubscribe(); to.error(new PeerTimeoutError(label(src.peer), 'watch')) }, watchMs + timeoutMs)
        }
      }
      const watch$ = new Observable<never>((sub) => {
        watchTo = sub
        return () => { watchTo = null; for (const end of [...open]) end() }
      })
      // nothing more from it for now: wait for its news (or a piece given back), then go on
      // (a paused source sleeps its pause out: waking it on every piece news would only spin it)
      // (it emits to go on, or completes empty once the download is complete; one subscriber and
      // one timer, not firstOrAfter (streams/) and a filter: every source rests many times)
      // (one stream per source, subscribed at each rest)
      const rest$ = new Observable<void>((sub) => {
        const go = (): void => { if (!picker.complete) sub.next(); sub.complete() }
        if (paused(id)) return scheduler.schedule(go, resumeIn(id))
        sendWatch()
        const off = idleSources.on(id, go)
        // (and look again after rediscoverMs in any case: a wake lost to a silent peer costs a second, not the download)
        const again = scheduler.schedule(go, rediscoverMs)
        return () => { off(); again.unsubscribe() }
      })
      const rest = (): Observable<unknown> => rest$
      // pieces only once they can be checked; the loop rests in itself once they can (until then
      // it starts again after each rest)
      const fetch$ = concat(hashes$, defer(() => !hashesKnown() ? EMPTY : leechPieces({
        next: () => {
          const missing = picker.missing
          // endgame copies go only to sources that delivered at this download's pace: an idle source
          // that never did may be one that went silent, and would hold the copy as well
          if (missing === 0 && (rates.get(id)?.rate ?? 0) === 0) return null
          const i = picker.complete || paused(id) ? null : picker.next(id)
          // the last missing piece went out: the endgame begins, idle sources may now fetch
          // copies of pieces in flight elsewhere (one may be stuck at a peer that went silent)
          if (missing > 0 && picker.missing === 0) scheduler.schedule(() => wake(null))
          return i === null ? null : i * meta.blockSize
        },
        fetch: (offset) => fetchPiece(src, offset / meta.blockSize),
        pipeline,
        window: () => windowOf(id),
        idle: rest,
      }))).pipe(repeat({ delay: rest }))
      // (watch$ first: a source with nothing for us goes idle at once, inside fetch$'s subscribe,
      // and that first idle signal must find watch$ listening, or the source is not watched
      // until something wakes it, a second later at worst)
      return merge(watch$, fetch$).pipe(
        takeUntil(swappedOut.once(id)),
        ignoreElements(),
        catchError((err: Error) => {
          // our own disk failing is no fault of the peer's: the whole download stops
          if (err instanceof StorageError) throw err
          // (a connection lost, or a peer gone silent, may come back: see someCooling; only one
          // that held something we lack is worth waiting for: leechers of a dead seeder, leaving
          // one after the other, each kept the others waiting another 8 s)
          const lost = (err instanceof ConnectionClosedError || err instanceof PeerTimeoutError) && picker.useful(id)
          picker.drop(id)
          sources.delete(id)
          unlinkUnused(src.peer)
          const failures = (cooling.get(id)?.failures ?? 0) + 1
          cooling.set(id, { failures, lost, until: scheduler.now() + Math.min(60_000, 5 * rediscoverMs * 2 ** (failures - 1)) })
          emit({ event: 'peer-dropped', peer: label(src.peer), code: (err as { code?: string }).code ?? 'ERR_PEER', error: err.message })
          wake(null) // its pieces went back: the others may fetch them
          return EMPTY
        }),
      )
    }

    // ------------------------------------------------------------ discovery, again and again
    // sources full: the one that gave the fewest bytes since the last round (of those used for
    // SOURCE_SWAP_AGE_MS and still downloading; complete holders stay) makes room for a member of
    // the cluster not used yet, when a round finds one; it is not taken back for a while.
    const swapAgeMs = opts.sourceSwapAgeMs ?? SOURCE_SWAP_AGE_MS
    let swapRoom = 0
    const swapCandidate = (): string | null => {
      const now = scheduler.now()
      if (picker.complete || !Number.isFinite(swapAgeMs)) return null
      let worst: string | null = null
      let fewest = Infinity
      for (const [id, s] of sources) {
        if (s.version === undefined || (s.since ?? now) > now - swapAgeMs) continue
        const bytes = roundBytes.get(id) ?? 0
        if (bytes < fewest) { fewest = bytes; worst = id }
      }
      return worst
    }
    const swapOut = (worst: string): void => {
      const gone = sources.get(worst)
      sources.delete(worst)
      if (gone !== undefined && deps.unlink !== undefined) scheduler.schedule(() => unlinkUnused(gone.peer)) // (once its fetches ended)
      swappedOut.fire(worst) // its fetches end and give their pieces back
      picker.drop(worst)
      cooling.set(worst, { failures: cooling.get(worst)?.failures ?? 0, until: scheduler.now() + 5 * rediscoverMs })
      swapRoom = 1
    }

    // One round: the tracker's holders (neighbours) are asked for their cluster, each with its own
    // timeout, and every member named is probed as soon as an answer names it, so sources come as
    // their probes answer: a neighbour or member that stays silent (a machine gone since it was
    // listed, a wedged process) delays no one ("doesn't matter, move on"). A known source that
    // answers watches keeps its bitfield fresh itself: a round probes the sources that do not
    // (complete holders, older peers) and only as many unknown peers as there is room for (at
    // scale, re-probing every member each round was a third of all requests).
    // a peer whose probe failed and that is no source: its connection is not kept (returns false)
    const unlinkUnused = (p: PeerAddress): false => {
      if (!sources.has(peerKey(p)) && !asking.has(peerKey(p))) deps.unlink?.(p)
      return false
    }
    const discoverOnce = (): Observable<Source[]> => deps.tracker.nodes(meta.hash).pipe(
      catchError(() => of([] as NodeInfo[])), // a tracker hiccup: the known cluster still works
      mergeMap((nodes) => {
        asSelf()
        for (const n of nodes) {
          if (listed.size >= MAX_LISTED_REMEMBERED) break
          const k = peerKey(n)
          if (!listed.has(k)) { listed.add(k); newHolderAt = scheduler.now() }
        }
        const neighbours = neighboursOf(nodes)
        let room = maxSources - sources.size
        const worst = room <= 0 ? swapCandidate() : null
        roundBytes.clear()
        const seen = new Set<string>()
        let members = 0
        let found = 0
        const eligible = (p: PeerAddress): boolean => {
          const key = peerKey(p)
          if (!notSelf(p) || seen.has(key)) return false
          seen.add(key)
          if (shunned(key)) return unlinkUnused(p)
          const known = sources.get(key)
          if (known !== undefined) return known.version === undefined
          if (room <= 0 && worst !== null && sources.has(worst) && !picker.complete) { swapOut(worst); room = 1 }
          // (a neighbour asked for its cluster and not probed: its link is not kept)
          return room-- > 0 || unlinkUnused(p)
        }
        const named$ = fanOutQuery(neighbours, (n) => deps.link(n).request(findCluster), {
          timeoutMs, concurrency: neighbours.length || 1, scheduler, onTimeout: (n) => new PeerTimeoutError(label(n), 'find_cluster'),
        }).pipe(
          tap((a) => { if (!isAnswer(a)) unlinkUnused(a.target) }),
          filter(isAnswer),
          mergeMap((a) => a.value.msg.type === 'cluster' ? [a.target, ...a.value.msg.peers] : [a.target]),
        )
        const members$ = concat(from([...sources.values()].map((s) => s.peer)), named$).pipe(filter(eligible), tap(() => members++))
        return fanOutQuery(members$, (p) => deps.link(p).request(probe), {
          timeoutMs, concurrency: Infinity, scheduler, onTimeout: (p) => new PeerTimeoutError(label(p), 'probe'),
        }).pipe(
          tap((a) => { if (!isAnswer(a)) unlinkUnused(a.target) }),
          filter(isAnswer),
          map((a) => toSource(a.target, a.value, meta)),
          filter((s): s is Source => s !== null),
          tap({ next: () => found++, complete: () => emit({ event: 'peers', neighbours: neighbours.length, cluster: members, sources: found }) }),
          // sources answering together are taken together (the hash list is then asked of a
          // source still downloading rather than of a seeder); a silent one delays the others by
          // DISCOVERY_BATCH_MS at most
          batchWithin(DISCOVERY_BATCH_MS, scheduler),
        )
      }),
    )

    // holders the tracker named so far (bounded), and when it last named one for the first time
    const listed = new Set<string>()
    let newHolderAt = -Infinity
    // while few sources are known (a swarm starting: the cluster fills as leechers arrive) look
    // again four times as often
    let roundAt = 0
    let rounds = 0 // discovery rounds completed
    const newSources$ = defer(() => { roundAt = scheduler.now(); return discoverOnce() }).pipe(
      // rounds start on a fixed cadence (a slow round delays the next one, never doubles it)
      tap({ complete: () => { rounds++ } }),
      repeat({ delay: () => timer(Math.max(0, roundAt + (sources.size < maxSources / 2 ? rediscoverMs / 4 : rediscoverMs) - scheduler.now()), scheduler) }),
      mergeMap((found) => {
        const fresh: Source[] = []
        for (const s of found) {
          // a probe answered after its peer was banned or dropped does not bring it back
          const key = idOf(s)
          if (shunned(key)) continue
          const known = sources.get(key)
          picker.setSource(key, s.bitfield, s.pending, s.sent)
          if (known !== undefined) { refresh(known, s); continue }
          if (sources.size >= maxSources) {
            if (swapRoom <= 0) { picker.drop(key); unlinkUnused(s.peer); continue }
            swapRoom--
          }
          addSource(s)
          fresh.push(s)
        }
        wake(null)
        return from(fresh)
      }),
    )

    // a peer that asked us about this file is downloading it too: it may become a source (up to
    // twice maxSources in all), so the swarm's graph has edges both ways and a late joiner's uplink
    // is not left idle until others look for peers again
    const asking = new Set<string>()
    const askers$ = (deps.askers ?? EMPTY).pipe(
      filter((p) => {
        const key = peerKey(p)
        return notSelf(p) && !sources.has(key) && !asking.has(key) && asking.size < FAN_OUT && !shunned(key) && sources.size < 2 * maxSources
      }),
      mergeMap((p) => {
        const key = peerKey(p)
        asking.add(key)
        return deps.link(p).request(probe).pipe(
          timeout({ first: timeoutMs, scheduler }),
          map((f) => toSource(p, f, meta)),
          catchError(() => of(null)),
          finalize(() => { asking.delete(key); unlinkUnused(p) }),
        )
      }),
      mergeMap((s) => {
        const id = s === null ? '' : idOf(s)
        if (s === null || picker.complete || sources.has(id) || sources.size >= 2 * maxSources || shunned(id)) return EMPTY
        picker.setSource(id, s.bitfield, s.pending, s.sent)
        addSource(s)
        return of(s)
      }),
    )

    // no source that holds a missing piece for `graceMs` (checked after each look) ends the
    // download, and so does storing nothing for `noProgressMs` from sources that hold what it lacks
    let starvedSince: number | null = null
    let starvedFirst: number | null = null
    const starved$ = timer(rediscoverMs, rediscoverMs, scheduler).pipe(
      map((): NoSourcesError | null => {
        const now = scheduler.now()
        if (picker.complete) return null
        if (budgetWaits > 0) progressAt = now
        if (now - progressAt >= noProgressMs) {
          // (with no source at all, nobody declined anything: the plain no-source error)
          if (sources.size === 0) return new NoSourcesError(meta.hash, picker.remaining, meta.name)
          return new NoSourcesError(meta.hash, picker.remaining, meta.name, `nothing arrived for ${((now - progressAt) / 1000).toFixed(now - progressAt < 10_000 ? 1 : 0)} s from its ${sources.size} source(s): they declined every request (busy, or broken)`)
        }
        // (the clock starts once a discovery round has completed: until then every holder may still
        // answer; nor does it run while a source dropped for the first time cools down: a lone
        // seeder that restarted, or closed an idle connection, is asked again once that is over, 5 s
        // later, where the grace ended the download after 3; one that fails again is not waited for)
        if (rounds === 0 || [...sources.keys()].some((id) => picker.useful(id)) || someCooling(now)) { starvedSince = null; starvedFirst = null; return null }
        // (and it starts again when the tracker's samples name a holder never named before: one
        // holder that answers among hundreds of ids registered for nothing is found in a later
        // sample; at most GRACE_RESTARTS graces later than it first ran out, or a get among
        // thousands of dead ids waited for each to be named)
        starvedFirst ??= now
        starvedSince = Math.min(Math.max(starvedSince ?? now, newHolderAt), starvedFirst + GRACE_RESTARTS * graceMs)
        if (now - starvedSince < graceMs) return null
        return new NoSourcesError(meta.hash, picker.remaining, meta.name, pieceHashes === null && rootDisputed.size > 0
          ? `${rootDisputed.size} peer(s) sent piece hash lists that do not match the root the tracker gave for this file (the tracker's entry may be wrong: published first by a node that does not hold this file)`
          : undefined)
      }),
      filter((err): err is NoSourcesError => err !== null),
      take(1),
      mergeMap((err) => throwError(() => err)),
    )

    const transfer$ = merge(merge(newSources$, askers$).pipe(mergeMap(runSource)), starved$)

    const finish$ = defer(() => sink.digest()).pipe(
      mergeMap((sha256) => {
        if (sha256 !== meta.hash) {
          // every piece of this run was checked on arrival: the bad ones are on disk from an earlier
          // run (changed since, or lost in a crash); the next run fetches only those. None bad (or no
          // way to tell): nothing on disk can be trusted, the next run starts over.
          // (each stored piece checked against its hash: in the sink's hash workers when it has them,
          // not on the event loop; the bad ones are forgotten)
          const recheck = (hashes: Buffer | null): Observable<number> => hashes === null || sink.verifyStored === undefined ? of(0) : sink.verifyStored(hashes)
          const mismatch = (bad: number): never => {
            if (bad === 0) sink.discardState?.()
            throw new HashMismatchError(meta.hash, sha256, bad)
          }
          // every piece came from an earlier run (a state saved ahead of its bytes: a power cut),
          // so the list was never fetched: it is asked of a holder now, to keep the pieces that are good
          const hashes$ = pieceHashes === null && !hashesKnown() && sink.verifyStored !== undefined ? hashListFromHolders() : of(pieceHashes)
          return hashes$.pipe(mergeMap(recheck), map(mismatch))
        }
        // what came hashes to the file; the file on disk must hold it too (another program may
        // have written to the .part meanwhile): only then does it get its name
        return (sink.verifyStored?.(pieceHashes) ?? of(0)).pipe(map((bad): LeechEvent => {
          if (bad > 0) throw new HashMismatchError(meta.hash, sha256, bad, true)
          const path = sink.commit()
          return { event: 'done', fileId: meta.hash, name: meta.name, path, bytes: meta.size, sha256, downloaded }
        }))
      }),
    )

    // the hash list from the first holder the tracker names that gives one matching the root (a
    // few tried in turn, each page with its timeout), or null
    const hashListFromHolders = (): Observable<Buffer | null> => deps.tracker.nodes(meta.hash).pipe(
      catchError(() => of([] as NodeInfo[])),
      mergeMap((nodes) => from(neighboursOf(nodes))),
      concatMap((peer) => defer(() => pieceHashes !== null ? EMPTY : fetchHashes({ peer, bitfield: null })).pipe(catchError(() => EMPTY))),
      defaultIfEmpty(null),
      last(),
      map(() => pieceHashes),
    )

    const start: LeechEvent = { event: 'start', fileId: meta.hash, name: meta.name, size: meta.size, blockSize: meta.blockSize, pieces: meta.pieces, present: meta.pieces - picker.remaining }
    const middle$ = picker.complete ? EMPTY : merge(events, transfer$).pipe(takeUntil(complete$))
    const s = concat(of(start), middle$, finish$).subscribe(sub)
    return () => { s.unsubscribe(); sink.close() }
  })
}

/** How many graces later than it first would a download with no usable source give up at most, while samples name new holders. */
const GRACE_RESTARTS = 5

/** Holders named by the tracker a download remembers (to tell whether its samples still name new ones). */
const MAX_LISTED_REMEMBERED = 4096

/** Watch answers in a row that may name nothing this download lacks before the next watch waits (see sendWatch). */
const USELESS_WATCHES = 3

/** Do two bitfields share a set bit? */
function intersects (a: Uint8Array, b: Uint8Array): boolean {
  for (let i = Math.min(a.length, b.length) - 1; i >= 0; i--) if ((a[i] & b[i]) !== 0) return true
  return false
}

/** The address (host:port) in a peer's key (see peerKey: `nodeId@host:port`). */
const addressOfKey = (key: string): string => key.slice(key.indexOf('@') + 1)

function toSource (peer: PeerAddress, f: Frame, meta: FileMetaData): Source | null {
  if (f.msg.type !== 'have' || f.msg.fileId !== meta.hash || f.msg.totalPieces !== meta.pieces) return null
  const s: Source = { peer, bitfield: f.msg.bitfield ?? null }
  if (f.msg.pending !== undefined) s.pending = f.msg.pending
  if (f.msg.sent !== undefined) s.sent = f.msg.sent
  if (f.msg.version !== undefined) s.version = f.msg.version
  if (f.msg.hashes === true) s.hashes = true
  return s
}
