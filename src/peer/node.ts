import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {
  asyncScheduler, catchError, concat, debounceTime, defaultIfEmpty, defer, EMPTY, exhaustMap, filter, finalize, from, lastValueFrom, map, merge,
  mergeMap, Observable, of, repeat, Subject, switchMap, type Subscription, take, tap, throwError, timer,
} from 'rxjs'
import { ConnectionClosedError, HashMismatchError, NoSourcesError, RemoteError } from '../errors'
import { heartbeats } from './heartbeat'
import { FAN_OUT, FULL_RETRY_MS, HEARTBEAT_MS, REFETCH_ROUNDS, LEAVE_WAIT_MS, MAX_BLOCK_SIZE, MAX_BUSY_RETRY_MS, MAX_PEERS_PER_REPLY, BUSY_QUEUE_MS, RAREST_FIRST_AGE_MS, TRACKER_CLIENT_RATE } from '../limits'
import { log } from '../log'
import { ID_IN_USE, peerKey, REMOTE_CODES, type FileMetaData, type Leech, type PeerAddress } from '../protocol/messages'
import { bindUdp, localAddressToward, type UdpPort } from '../net/udp'
import { TrackerClient } from '../net/trackerClient'
import { udpTrackerTransport } from '../net/udpTrackerTransport'
import { PeerConnection } from '../net/peerConnection'
import { PeerServer } from '../net/peerServer'
import { BufferPool } from '../storage/bufferPool'
import { FileSink } from '../storage/fileSink'
import { hashPieces, hashRoot } from '../storage/hashFile'
import { FileChangedError, MappedFile } from '../storage/mappedFile'
import { tidyAfterCommit } from '../storage/partFile'
import type { Endpoint } from '../tracker/flow'
import { TokenBucket } from '../../streams/rateLimit'
import { ClusterTable } from './clusterTable'
import { leech, type LeechEvent, type LeechOptions } from './leech'
import { SharedListing } from './listing'
import { resolveFile } from './resolve'
import { HeldDownload } from './held'
import { busyWaitFor, passesBusy, servedShare, serveRequest, serveWatch, WatchKicker, type ServeContext, type ServedFile } from './serve'
import { hashFile } from '../storage/hashFile'
import { segment } from '../protocol/segmentation'
import { safeRelativeName } from '../storage/names'
import { listShare, MAX_SHARED_FILES, planShare, sameAs, sameVersion, scanShare, RESCAN_COST_FACTOR, SHARE_DEBOUNCE_MS, SHARE_RESCAN_MAX_MS, SHARE_RESCAN_MS, SHARE_SETTLE_MS, stampOf, type KnownFile, type LocalFile, type ShareEntry } from './share'

export interface NodeOptions {
  tracker: Endpoint
  /** Address to bind (UDP to the tracker, TCP for peers). Default: the one this machine reaches the tracker from (`localAddressToward`). */
  host?: string
  /** TCP port for peers (0: any free port). */
  port?: number
  /** Folder whose files this node shares. */
  share?: string
  /** Serve pieces to peers (sharing peers and leechers both do; off for one-shot queries like `ls`). */
  serve?: boolean
  /** Bytes per second; Infinity: no cap. */
  uploadLimit?: number
  downloadLimit?: number
  heartbeatMs?: number
  /** A shared file the tracker refused (FULL) or lists under another root is offered again after this long (default FULL_RETRY_MS). */
  publishRetryMs?: number
  /** Tracker request tuning (tests use short timeouts). */
  trackerTimeoutMs?: number
  trackerAttempts?: number
  /**
   * Keep watching `share`: new files are hashed and published once settled, removed or replaced
   * ones withdrawn (default true when `share` is given; false: the files found at start only).
   */
  watch?: boolean | ShareWatchOptions
}

export interface ShareWatchOptions {
  /** How long a new file's size and mtime must hold still before it is hashed. */
  settleMs?: number
  /** Full rescan period (the safety net for missed watch events). */
  rescanMs?: number
}

/** A change to what a node shares from its folder (the `shared` shape is the one `peer --json` prints). */
export type ShareEvent =
  | { event: 'shared', name: string, fileId: string, size: number, blockSize: number, pieces: number }
  | { event: 'withdrawn', name: string, fileId: string, reason: string }
  | { event: 'renamed', name: string, from: string, fileId: string }

/** A download's own options on top of the leech tuning. */
export interface NodeLeechOptions extends LeechOptions {
  /** Bytes per second for this download alone (within the node's `downloadLimit`); Infinity or 0: no cap. */
  downloadLimit?: number
  /** Where the name is resolved: a listing shared by the downloads of one get (`sharedListing()`); default a listing of its own. */
  listing?: SharedListing
}

/** A connection to a peer, shared by the downloads that use it: closed when the last one ends. */
interface SharedLink { conn: PeerConnection, users: number }

/**
 * A local-p2p node: wiring of adapters (UDP to the tracker, TCP to and from peers, mmap'd files)
 * around the flows. It publishes what it shares, heartbeats with its counters, keeps a cluster
 * table and serves pieces: of its shared files and, from the first verified piece on, of what it
 * is downloading.
 */
export class Lp2pNode {
  private id = randomBytes(16).toString('hex')
  /**
   * This node's id at the tracker: random, and replaced by a new one when the tracker says
   * another address holds it (ids are public: after a tracker restart, or a gap in this node's
   * heartbeats past the TTL, anyone could claim it first and kept this node out for good).
   */
  get nodeId (): string { return this.id }

  /** The tracker says our id is held from another address: take a new one (the next heartbeat publishes everything under it). */
  private idTaken (err: unknown, sentAs: string): void {
    // (a late answer to a request sent under an id already replaced changes nothing)
    if (!(err instanceof RemoteError) || err.remoteCode !== ID_IN_USE || sentAs !== this.id) return
    const old = this.id
    this.id = randomBytes(16).toString('hex')
    this.log.warn({ old: old.slice(0, 16), id: this.id.slice(0, 16) }, 'node id taken at the tracker by another address: using a new one')
  }
  readonly cluster = new ClusterTable()
  private udp: UdpPort | null = null
  private tracker: TrackerClient | null = null
  private server: PeerServer | null = null
  private listen: Endpoint | null = null
  private readonly served = new Map<string, ServedFile>()
  /** An idle uplink tells held watches what it has (a node that does not serve never holds any). */
  private readonly kicker = new WatchKicker(() => this.served.values(), () => this.server !== null && this.server.queuedPieceBytes === 0, asyncScheduler)
  private readonly shared = new Map<string, LocalFile & { meta?: FileMetaData }>()
  /** Shared files a full tracker refused, or listed under another root, and when to offer them again. */
  private readonly retryAt = new Map<string, number>()
  /** Downloads (running or done), by file id: what they hold and how they are served. */
  private readonly held = new Map<string, HeldDownload<MappedFile>>()
  private local: LocalFile[] = []
  private readonly subs: Subscription[] = []
  /** One-off requests (publish, withdraw): each leaves this set when it completes, so a long-running peer does not pile them up. */
  private readonly oneOffs = new Set<Subscription>()
  private fire (o: Observable<unknown>): void {
    let s: Subscription | undefined
    s = o.pipe(finalize(() => { if (s !== undefined) this.oneOffs.delete(s) })).subscribe()
    if (!s.closed) this.oneOffs.add(s)
  }

  /** One-off tracker requests still running. */
  get pendingRequests (): number { return this.oneOffs.size }
  /**
   * Files to withdraw at the tracker, kept until it acknowledges (retried with each heartbeat:
   * a withdraw lost left the file listed here for good), and those whose withdraw is on its way;
   * they go through one stream, a few at once.
   */
  private readonly unlisting = new Set<string>()
  private readonly withdrawing = new Set<string>()
  private readonly withdraws = new Subject<string>()
  /** Shared files whose publish is on its way (a heartbeat does not send them again meanwhile). */
  private readonly publishing = new Set<string>()
  /** Renamed while their publish was on its way: published again once it is answered. */
  private readonly republishAfter = new Set<string>()
  /** Scan the watched share soon (null: not watched). */
  private rescanSoon: (() => void) | null = null
  private readonly links = new Map<string, SharedLink>()
  /** What the share watcher hashed, by path. */
  private readonly known = new Map<string, KnownFile>()
  /** Paths of the share said not shared (unsafe name, unreadable folder): said once each, not every rescan. */
  private readonly skipped = new Set<string>()
  private readonly shareEvents = new Subject<ShareEvent>()
  /** Files published or withdrawn after start, as the share folder changes. Hot; completes on close. */
  readonly shareChanges$: Observable<ShareEvent> = this.shareEvents.asObservable()
  private closed = false
  /** `start` returned: files published from now on are told on `shareChanges$`. */
  private started = false
  /** Heartbeats failed in a row. */
  private missedBeats = 0
  /** Fires once, on close: downloads still running end with an error. */
  private readonly closing = new Subject<void>()
  private readonly log = log.child({ module: 'node' })
  /** Peers that asked this node about a file they download too (candidate sources for our download of it). */
  private readonly askers = new Subject<{ fileId: string, peer: PeerAddress }>()
  private refreshCursor = 0
  /** Piece buffers: reused across pieces and downloads. */
  private readonly pool = new BufferPool(64 * 1024 * 1024, MAX_BLOCK_SIZE)
  private readonly uploadBudget: TokenBucket | undefined
  private readonly downloadBudget: TokenBucket | undefined
  /** Bytes of piece payloads sent and received. */
  uploaded = 0
  downloaded = 0

  constructor (private readonly opts: NodeOptions) {
    const cap = (r: number | undefined): TokenBucket | undefined => r === undefined || !Number.isFinite(r) || r <= 0 ? undefined : new TokenBucket({ rate: r, ageMs: RAREST_FIRST_AGE_MS })
    this.uploadBudget = cap(opts.uploadLimit)
    this.downloadBudget = cap(opts.downloadLimit)
  }

  get trackerClient (): TrackerClient {
    if (this.tracker === null) throw new Error('node not started')
    return this.tracker
  }

  get address (): Endpoint | null { return this.listen }
  get sharedFiles (): LocalFile[] { return this.local }
  get publishedFiles (): FileMetaData[] { return [...this.shared.values()].flatMap((s) => s.meta === undefined ? [] : [s.meta]) }

  async start (): Promise<void> {
    // (by default the address the tracker will see us at: loopback for a tracker on loopback,
    // the LAN address for one on the LAN; 127.0.0.1 could not even reach the latter)
    const host = this.opts.host ?? await localAddressToward(this.opts.tracker)
    this.udp = await bindUdp(host, 0, (err, to) => this.log.debug({ err: err.message, to }, 'udp send failed'))
    this.tracker = new TrackerClient(udpTrackerTransport(this.udp, this.opts.tracker), { timeoutMs: this.opts.trackerTimeoutMs, attempts: this.opts.trackerAttempts, ratePerSecond: TRACKER_CLIENT_RATE })
    if (this.opts.share !== undefined) this.local = await scanShare(this.opts.share, undefined, this.skip)
    for (const f of this.local) this.shared.set(f.fileId, f)
    if (this.opts.serve ?? true) {
      const ctx: ServeContext = {
        file: (id) => this.served.get(id),
        cluster: this.cluster,
        // (a shared file gone from its path may have been renamed: a scan of the folder tells,
        // and follows it or withdraws it; one that changed size is withdrawn at once)
        onFileChanged: (id, err) => {
          if (err instanceof FileChangedError && err.gone && this.shared.has(id) && this.rescanSoon !== null) this.rescanSoon()
          else this.withdraw(id, err)
        },
        onAsker: (fileId, peer) => this.askers.next({ fileId, peer }),
        uploadRate: this.opts.uploadLimit,
      }
      this.server = new PeerServer((m, remote) => serveRequest(m, ctx, remote), {
        host,
        port: this.opts.port ?? 0,
        onUpload: (n) => { this.uploaded += n },
        budget: this.uploadBudget,
        // behind an upload cap, a queue longer than BUSY_QUEUE_MS of it is declined (BUSY)
        busyBytes: this.uploadBudget === undefined ? undefined : (this.opts.uploadLimit as number) * BUSY_QUEUE_MS / 1000,
        passesBusy: (m) => this.passesBusy(m),
        owed: () => this.uploadBudget?.owed() ?? 0,
        // (and no sooner than the budget is out of debt: asked earlier, it is still busy)
        busyWaitMs: (m) => {
          const wait = busyWaitFor(m, ctx)
          const b = this.uploadBudget
          if (wait === undefined || b === undefined) return wait
          return Math.min(MAX_BUSY_RETRY_MS, Math.max(wait, Math.ceil(b.owed() * 1000 / b.rate)))
        },
        watch: (m, remote) => serveWatch(m, ctx, asyncScheduler, remote),
        onIdle: () => this.kicker.poke(),
      })
      this.listen = await this.server.start()
      this.subs.push(this.withdrawLoop(this.listen.port))
      await lastValueFrom(this.publishShared().pipe(defaultIfEmpty(null)))
      this.subs.push(this.heartbeats())
    }
    const watch = this.opts.watch ?? true
    if (this.opts.share !== undefined && watch !== false) {
      for (const f of this.local) {
        try {
          this.known.set(f.path, { ...stampOf(fs.lstatSync(f.path)), fileId: f.fileId, shared: true })
        } catch { /* gone already: the first scan withdraws it */ }
      }
      this.subs.push(this.watchShare(this.opts.share, watch === true ? {} : watch))
    }
    this.started = true
  }

  /** Publish every shared file with its root; re-hash pieces if the tracker chose another segmentation. */
  private publishShared (files: LocalFile[] = this.local): Observable<FileMetaData> {
    if (this.listen === null) return EMPTY // a node that serves nothing publishes nothing
    const port = this.listen?.port ?? 0
    const sentAs = this.nodeId
    const publish = (f: LocalFile): Observable<FileMetaData> => this.trackerClient.request({ type: 'publish', nodeId: sentAs, port, name: f.name, hash: f.fileId, size: f.size, blockSize: f.blockSize, root: f.root }).pipe(map((r) => r.meta))
    let failed = 0
    let firstFailure: { file: string, err: string } | null = null
    return from(files).pipe(
      filter((f) => !this.publishing.has(f.fileId)),
      // (listed again: a withdraw still to send would unlist it)
      tap((f) => { this.publishing.add(f.fileId); this.unlisting.delete(f.fileId) }),
      mergeMap((f) => publish(f).pipe(
        mergeMap((meta) => meta.blockSize === f.blockSize
          ? [meta]
          : from(hashPieces(f.file, meta.blockSize)).pipe(mergeMap((ph) => { f.blockSize = meta.blockSize; f.pieceHashes = ph; f.root = hashRoot(ph); return publish(f) }))),
        tap((meta) => {
          const entry = this.shared.get(f.fileId)
          if (entry === undefined || entry.file !== f.file) return // withdrawn while the tracker answered
          // (a file published after start, found by a scan or retried by a heartbeat after the
          // tracker was down, is told once; those published by start are in `publishedFiles`)
          const first = entry.meta === undefined
          const wasDisputed = entry.meta !== undefined && disputesRoot(entry.meta, f)
          entry.meta = meta
          if (disputesRoot(meta, f)) {
            // listed under a root a node that does not hold this file published first: offered again
            // after a while, as the tracker lets the real root replace it once that node is gone
            this.retryLater(f.fileId)
            if (!wasDisputed) this.log.warn({ file: f.name, fileId: f.fileId, root: f.root, trackerRoot: meta.root }, 'the tracker lists this file under another root (published first by a node that does not hold it?): gets cannot check its pieces; offered again every 30 s')
          }
          this.served.set(meta.hash, servedShare(meta, () => f.file, () => f.blockSize === meta.blockSize ? f.pieceHashes : null, () => f.file.checkSize()))
          if (first && this.started && !this.closed) this.shareEvents.next({ event: 'shared', name: meta.name, fileId: meta.hash, size: meta.size, blockSize: meta.blockSize, pieces: meta.pieces })
        }),
        catchError((err: Error) => {
          if (failed === 0) this.idTaken(err, sentAs)
          // a full tracker refused it (a fair share to other hosts): it is not counted as listed
          // (else every heartbeat asked for the whole share again, for as long as the tracker stayed
          // full) and is offered again after a while
          if (err instanceof RemoteError && err.remoteCode === REMOTE_CODES.full) {
            const entry = this.shared.get(f.fileId)
            if (entry !== undefined && entry.file === f.file) entry.meta = undefined
            this.retryLater(f.fileId)
          }
          // (said once per batch, with how many: a tracker away while thousands are published would be thousands of lines)
          if (failed++ === 0) firstFailure = { file: f.name, err: err.message }
          return EMPTY
        }),
        finalize(() => {
          this.publishing.delete(f.fileId)
          // renamed while this publish was on its way: the tracker has the old name
          if (this.republishAfter.delete(f.fileId) && this.shared.get(f.fileId) === f && !this.closed) this.fire(this.publishShared([f]))
        }),
      ), 8),
      finalize(() => { if (firstFailure !== null) this.log.warn({ ...firstFailure, failed }, 'publish failed; retried with the next heartbeat') }),
    )
  }

  /**
   * A shared file changed or vanished on disk: stop serving it (reading a truncated mapping would
   * kill the process) and tell the tracker, so leechers stop being sent here for it.
   */
  private withdraw (fileId: string, err: Error, level: 'warn' | 'info' = 'warn'): void {
    const f = this.shared.get(fileId)
    if (f === undefined) {
      // a finished download this node seeds (`get --seed`, the API) whose file changed on disk:
      // no longer served, nor listed (its askers were sent here only to fail)
      const h = this.held.get(fileId)
      if (h === undefined || !h.complete) return
      this.log[level]({ fileId, err: err.message }, 'downloaded file changed on disk: no longer seeded')
      this.served.delete(fileId)
      this.held.delete(fileId)
      h.file?.close()
      this.unlist(fileId)
      return
    }
    this.log[level]({ fileId, err: err.message }, 'shared file changed on disk: withdrawn')
    this.served.delete(fileId)
    this.shared.delete(fileId)
    this.local = this.local.filter((l) => l.fileId !== fileId)
    f.file.close()
    // the watcher hashes the path again once it has settled (a replaced file), and copies of the
    // same contents elsewhere in the folder, so one of them takes over
    for (const [p, k] of this.known) if (k.fileId === fileId) this.known.delete(p)
    if (!this.closed) this.shareEvents.next({ event: 'withdrawn', name: f.name, fileId, reason: err.message })
    this.unlist(fileId)
  }

  /** Tell the tracker this node no longer holds a file (when it serves and is not closing: a closed node's records expire). */
  private unlist (fileId: string): void {
    if (this.listen === null || this.closed) return
    this.unlisting.add(fileId)
    this.sendWithdraws()
  }

  /** Send the withdraws not acknowledged yet nor on their way. */
  private sendWithdraws (): void {
    for (const id of this.unlisting) {
      if (this.listedAgain(id)) { this.unlisting.delete(id); continue }
      if (this.withdrawing.has(id)) continue
      this.withdrawing.add(id)
      this.withdraws.next(id)
    }
  }

  /** Is a file this node was to withdraw shared or downloaded again? */
  private listedAgain (fileId: string): boolean {
    return this.shared.has(fileId) || this.held.has(fileId)
  }

  /** The withdraws, 8 at once (the tracker client paces them); one that fails waits for the next heartbeat. */
  private withdrawLoop (port: number): Subscription {
    let failed = 0
    return this.withdraws.pipe(
      mergeMap((fileId) => defer(() => {
        // (shared or downloaded again while it waited: not withdrawn)
        if (!this.listedAgain(fileId)) return this.trackerClient.request({ type: 'withdraw', nodeId: this.nodeId, port, fileId })
        this.unlisting.delete(fileId)
        return EMPTY
      }).pipe(
        tap(() => this.unlisting.delete(fileId)),
        catchError((e: Error) => {
          // (said once per burst of failures, not once per file: a folder emptied at once is thousands)
          if (failed++ === 0) this.log.warn({ fileId, err: e.message }, 'withdraw not acknowledged; retried with the next heartbeat')
          return EMPTY
        }),
        finalize(() => { this.withdrawing.delete(fileId); if (this.withdrawing.size === 0) failed = 0 }),
      ), 8),
    ).subscribe()
  }

  /**
   * Follow the shared folder: fs.watch events (debounced) and a periodic rescan trigger a scan;
   * one scan runs at a time, and one more follows when something happened meanwhile or a file
   * is still settling. A scan lists the folder (no hashing), withdraws what is gone or changed
   * and hashes and publishes what has settled.
   */
  private watchShare (dir: string, o: ShareWatchOptions): Subscription {
    const settleMs = o.settleMs ?? SHARE_SETTLE_MS
    const rescanMs = o.rescanMs ?? SHARE_RESCAN_MS
    let settling = new Map<string, ShareEntry>()
    let again = false
    let scanning = false
    const kick = new Subject<void>()
    const recheck = new Subject<void>()
    // (without watch events the rescans are all there is: they keep their period)
    let watching = true
    const changes$ = new Observable<void>((sub) => {
      let w: fs.FSWatcher
      try {
        w = fs.watch(dir, { recursive: true }, () => sub.next())
      } catch (err) {
        watching = false
        this.log.warn({ dir, err: (err as Error).message }, 'cannot watch the shared folder: rescanning periodically only')
        return
      }
      w.on('error', (err) => { watching = false; this.log.warn({ dir, err: err.message }, 'watching the shared folder failed: rescanning periodically only') })
      return () => w.close()
    })
    this.rescanSoon = () => kick.next()
    // while watch events come, the periodic rescan waits at least RESCAN_COST_FACTOR times what
    // the last listing took, at most SHARE_RESCAN_MAX_MS: a folder of 10,000 files (0.65 s of stat
    // calls) rescanned every 5 s kept an idle peer at 10 % of a core
    let rescanEvery = rescanMs
    const scan = (): Observable<unknown> => defer(async () => {
      scanning = true
      again = false
      const listedAt = performance.now()
      const listing = await listShare(dir, MAX_SHARED_FILES, this.skip)
      rescanEvery = watching ? Math.max(rescanMs, Math.min(SHARE_RESCAN_MAX_MS, RESCAN_COST_FACTOR * (performance.now() - listedAt))) : rescanMs
      const plan = planShare(this.known, settling, listing, Date.now(), settleMs)
      settling = plan.settling
      for (const { from, to } of plan.rename) {
        const k = this.known.get(from)
        if (k === undefined) continue
        this.known.delete(from)
        this.known.set(to.path, { ...k, ...stampOf(to) })
        if (k.shared && k.fileId !== null) this.renameShared(k.fileId, to)
      }
      for (const p of plan.withdraw) {
        const k = this.known.get(p)
        this.known.delete(p)
        if (k?.shared === true && k.fileId !== null) this.withdraw(k.fileId, new Error(`${p} was removed or changed`), 'info')
      }
      const fresh: LocalFile[] = []
      for (const e of plan.recheck) {
        if (this.closed) break
        const f = await this.recheckShared(e)
        if (f !== null) fresh.push(f)
      }
      for (const e of plan.hash) {
        if (this.closed) break
        const f = await this.hashShared(e)
        if (f !== null) fresh.push(f)
      }
      if (fresh.length > 0 && !this.closed) await lastValueFrom(this.publishShared(fresh).pipe(defaultIfEmpty(null)))
    }).pipe(
      catchError((err: Error) => { this.log.warn({ dir, err: err.message }, 'scanning the shared folder failed; retried with the next rescan'); return EMPTY }),
      finalize(() => {
        scanning = false
        // something changed while we scanned, or a file is still settling: look again
        if (again) kick.next()
        else if (settling.size > 0) recheck.next()
      }),
    )
    return merge(
      merge(changes$, kick).pipe(tap(() => { if (scanning) again = true }), debounceTime(SHARE_DEBOUNCE_MS)),
      recheck.pipe(switchMap(() => timer(settleMs))),
      defer(() => timer(rescanEvery)).pipe(repeat()),
    ).pipe(exhaustMap(() => scan())).subscribe()
  }

  /**
   * A shared file was renamed (`mv` within the folder): it is served on from where it is now,
   * and published under its new name; nothing is withdrawn, so downloads from it go on.
   */
  private renameShared (fileId: string, to: ShareEntry): void {
    const f = this.shared.get(fileId)
    if (f === undefined || f.path === to.path) return
    const from = f.name
    f.path = to.path
    f.name = to.name
    f.file.moved(to.path)
    if (!this.closed) this.shareEvents.next({ event: 'renamed', name: to.name, from, fileId })
    if (this.publishing.has(fileId)) this.republishAfter.add(fileId)
    else this.fire(this.publishShared([f]))
  }

  /**
   * A known file of the share whose ctime alone changed (see `SharePlan.recheck`): hashed again
   * while it is served on. The same id: only its stamp is new. Another: the old one is withdrawn
   * and the new one hashed and shared as a new file (returned, to publish).
   */
  private async recheckShared (e: ShareEntry): Promise<LocalFile | null> {
    const k = this.known.get(e.path)
    if (k === undefined) return null
    let fileId: string | null = null
    try {
      const file = MappedFile.open(e.path, undefined, { under: this.opts.share, listed: e })
      try { fileId = (await hashFile(file, segment(file.size).blockSize)).fileId } finally { file.close() }
    } catch { /* gone or unreadable: as changed */ }
    // (withdrawn meanwhile, by the server finding it changed, or the node closing: not ours to put
    // back; a path no longer known settles and is hashed anew at the next scans)
    if (this.closed || this.known.get(e.path) !== k || (k.shared && k.fileId !== null && !this.shared.has(k.fileId))) {
      if (this.known.get(e.path) === k) this.known.delete(e.path)
      return null
    }
    if (fileId !== null && fileId === k.fileId) {
      this.known.set(e.path, { ...stampOf(e), fileId, shared: k.shared })
      return null
    }
    this.known.delete(e.path)
    if (k.shared && k.fileId !== null) this.withdraw(k.fileId, new Error(`${e.path} was changed in place`), 'info')
    return await this.hashShared(e)
  }

  /** Offer shared file `fileId` again only after a while (a full tracker refused it, or lists it under another root). */
  private retryLater (fileId: string): void { this.retryAt.set(fileId, Date.now() + (this.opts.publishRetryMs ?? FULL_RETRY_MS)) }

  /** Map and hash one settled file of the share; null when it vanished, changed meanwhile, or its contents are shared already. */
  private async hashShared (e: ShareEntry): Promise<LocalFile | null> {
    let file: MappedFile
    try { file = MappedFile.open(e.path, undefined, { under: this.opts.share, listed: e }) } catch (err) {
      this.log.warn({ path: e.path, err: (err as Error).message }, 'cannot open shared file: skipped')
      this.known.set(e.path, { ...stampOf(e), fileId: null, shared: false })
      return null
    }
    try {
      const h = await hashFile(file, segment(file.size).blockSize)
      const st = await fs.promises.lstat(e.path)
      // written to while we hashed: it settles again first (and a node closed meanwhile maps nothing more)
      if (!sameVersion(st, e) || file.size !== e.size || this.closed) { file.close(); return null }
      if (this.shared.has(h.fileId) || this.shared.size >= MAX_SHARED_FILES) {
        const first = this.shared.get(h.fileId)
        if (first === undefined) this.log.warn({ path: e.path }, `more than ${MAX_SHARED_FILES} files: not shared`)
        else this.skip(e.path, sameAs(first.name))
        file.close()
        this.known.set(e.path, { ...stampOf(e), fileId: h.fileId, shared: false })
        return null
      }
      const f: LocalFile = { path: e.path, name: e.name, size: file.size, file, ...h }
      this.known.set(e.path, { ...stampOf(e), fileId: h.fileId, shared: true })
      this.shared.set(f.fileId, f)
      this.local = [...this.local, f]
      return f
    } catch (err) {
      file.close()
      this.log.warn({ path: e.path, err: (err as Error).message }, 'cannot hash shared file: retried when it changes')
      this.known.set(e.path, { ...stampOf(e), fileId: null, shared: false })
      return null
    }
  }

  /** Publish what this node holds of a download (partial or complete); a node that serves nothing publishes nothing. */
  private publishHeld (h: HeldDownload): Observable<unknown> {
    if (this.listen === null) return EMPTY
    this.unlisting.delete(h.meta.hash)
    const sentAs = this.nodeId
    return this.trackerClient.request(h.publish(sentAs, this.listen.port)).pipe(
      catchError((err: Error) => { this.idTaken(err, sentAs); this.log.warn({ file: h.meta.name, err: err.message }, 'publish failed; retried with the next heartbeat'); return EMPTY }),
    )
  }

  /**
   * Downloads this node lists at the tracker: all of them, from their start (with `have: 0` at
   * first), when it serves. A leecher that has nothing yet is still a neighbour others can ask
   * for the cluster, and those that ask it become its sources: a swarm that starts at once is linked
   * at random from its first second. (Listed only once they held a piece, the first leechers knew
   * only the seeder and the few that had asked it just before them: a chain of small
   * neighbourhoods, along which pieces crept.) Its pieces are served only once verified.
   */
  private get listedHeld (): HeldDownload[] { return this.listen === null ? [] : [...this.held.values()] }

  private readonly skip = (p: string, reason: string): void => {
    if (this.skipped.has(p) || this.skipped.size >= MAX_SHARED_FILES) return
    this.skipped.add(p)
    this.log.warn({ path: p, reason }, 'not shared')
  }

  /**
   * The files the tracker should list for this node (its heartbeat says how many: fewer there,
   * and the tracker asks for everything again): the shared ones it acknowledged (not those whose
   * publish is on its way or failed: a heartbeat retries those) and the downloads.
   */
  private get fileCount (): number {
    let n = 0
    for (const f of this.shared.values()) if (f.meta !== undefined) n++
    return n + this.listedHeld.length
  }

  /** May this piece request pass a busy uplink (a fresh piece, a starved asker)? */
  private passesBusy (m: Leech): boolean {
    const f = this.served.get(m.hash)
    return f !== undefined && passesBusy(f, m)
  }

  /** Announce every period with the counters; re-publish when the tracker lost us; refresh a few cluster rows. */
  private heartbeats (): Subscription {
    return heartbeats({
      periodMs: this.opts.heartbeatMs ?? HEARTBEAT_MS,
      announce: () => {
        const sentAs = this.nodeId
        return this.trackerClient.request({ type: 'announce', nodeId: sentAs, port: this.listen?.port ?? 0, files: this.fileCount, uploaded: this.uploaded, downloaded: this.downloaded }).pipe(
          tap({ next: () => { this.missedBeats = 0 }, error: (err: unknown) => this.idTaken(err, sentAs) }),
        )
      },
      republish: () => [this.publishShared(), ...this.listedHeld.map((h) => this.publishHeld(h))],
      regular: () => {
        // (shared files the tracker has not acknowledged, and withdraws it has not, are sent
        // again on their own: a beat does not wait for thousands of them)
        const now = Date.now()
        for (const [id, until] of this.retryAt) if (until <= now || !this.shared.has(id)) this.retryAt.delete(id)
        const unpublished = this.local.filter((f) => {
          const meta = this.shared.get(f.fileId)?.meta
          return (meta === undefined || disputesRoot(meta, f)) && !this.retryAt.has(f.fileId)
        })
        if (unpublished.length > 0) this.fire(this.publishShared(unpublished))
        this.sendWithdraws()
        return [this.refreshClusters(), ...this.listedHeld.filter((h) => !h.complete).map((h) => this.publishHeld(h))]
      },
      // (one missed beat is said at debug level: it is retried, and whatever else asked the tracker
      // meanwhile, a get's file list for one, reports it; two in a row are a tracker that is gone)
      onError: (err) => this.log[++this.missedBeats >= 2 ? 'warn' : 'debug']({ err: err.message, missed: this.missedBeats }, 'heartbeat failed; backing off'),
    }).subscribe()
  }

  /** Learn other holders of a few of our files (round robin) for the cluster table. */
  private refreshClusters (): Observable<unknown> {
    const ids = [...this.served.keys()]
    if (ids.length === 0) return EMPTY
    const batch = Array.from({ length: Math.min(8, ids.length) }, () => ids[this.refreshCursor++ % ids.length])
    return from(new Set(batch)).pipe(
      // the tracker's live holders replace the row: a peer that died or withdrew leaves it
      mergeMap((id) => this.trackerClient.sample(id, MAX_PEERS_PER_REPLY).pipe(tap((nodes) => {
        this.cluster.replace(id, nodes.filter((n) => n.nodeId !== this.nodeId).map((n) => ({ nodeId: n.nodeId, host: n.host, port: n.port })))
      })), 4),
    )
  }

  /**
   * A download's view of the node's peer connections: links are shared between downloads and
   * counted, so one download ending closes only the connections no other download uses.
   */
  private linksFor (): { link: (p: PeerAddress) => PeerConnection, unlink: (p: PeerAddress) => void, release: () => void } {
    const mine = new Set<string>()
    const drop = (id: string): void => {
      const l = this.links.get(id)
      if (l === undefined || --l.users > 0) return
      l.conn.close()
      this.links.delete(id)
    }
    // (by id and address, peerKey: a link made for an impostor's entry, an honest id at its own
    // address, was the link every download used for that id)
    return {
      link: (p) => {
        const key = peerKey(p)
        let l = this.links.get(key)
        if (l === undefined) { l = { conn: new PeerConnection(p, this.pool), users: 0 }; this.links.set(key, l) }
        if (!mine.has(key)) { mine.add(key); l.users++ }
        return l.conn
      },
      // (one the download no longer needs: closed now if no other download uses it)
      unlink: (p) => { const key = peerKey(p); if (mine.delete(key)) drop(key) },
      release: () => {
        for (const id of mine) drop(id)
        mine.clear()
      },
    }
  }

  /** How many peer connections are open (or ready to reconnect), for tests and status. */
  get linkCount (): number { return this.links.size }

  /**
   * Download a file by name or id prefix into `out`, serving its verified pieces to others
   * meanwhile. After `done`, the node keeps serving the complete file until it is closed.
   * Unsubscribe to stop (the .part stays); only the connections no other download uses are
   * closed. Cold: each subscription is one download.
   */
  /** One tracker listing for the downloads of several names (see SharedListing). */
  sharedListing (): SharedListing { return new SharedListing(() => this.trackerClient.files()) }

  leech (query: string, out: string, opts: NodeLeechOptions = {}): Observable<LeechEvent> {
    const closed = (): Error => new ConnectionClosedError('node', 'the node was closed')
    return new Observable<LeechEvent>((sub) => {
      if (this.closed) { sub.error(closed()); return }
      // the node closing ends the download as unsubscribing would (the .part stays), as an error
      const c = this.closing.subscribe(() => sub.error(closed()))
      // pieces on disk that failed the final check (changed since an earlier run stored them, or
      // by another program meanwhile) were forgotten: they are fetched again in this same get, a
      // few rounds at most (something that keeps writing to the .part gets the error)
      let fetched = 0
      let fileId: string | null = null
      let reresolved = false
      const round = (n: number): Observable<LeechEvent> => this.leechOnce(query, out, opts).pipe(
        map((e) => {
          if (e.event === 'start') fileId = e.fileId
          if (e.event === 'piece') fetched += e.bytes
          return e.event === 'done' ? { ...e, downloaded: fetched } : e
        }),
        catchError((err: unknown) => {
          // resolved in a listing kept for several names, to a version since replaced at its
          // sharer (no one holds it now): resolved again in a new listing, once, and fetched
          // again only if that names another version (a holder really gone fails at once)
          const listing = opts.listing
          if (err instanceof NoSourcesError && fetched === 0 && !reresolved && listing?.forget(query) === true) {
            reresolved = true
            return listing.files(query).pipe(mergeMap((files) => {
              let now: string | null = null
              try { now = resolveFile(files, query).hash } catch { /* not there now: the error stands */ }
              return now !== null && now !== fileId ? round(n) : throwError(() => err)
            }))
          }
          if (!(err instanceof HashMismatchError) || err.badPieces === 0 || n >= REFETCH_ROUNDS) return throwError(() => err)
          this.log.warn({ query, pieces: err.badPieces, round: n + 1 }, 'stored pieces failed the final check: fetching them again')
          return concat(of<LeechEvent>({ event: 'refetch', pieces: err.badPieces, reason: err.message }), round(n + 1))
        }),
      )
      const s = round(0).subscribe(sub)
      return () => { c.unsubscribe(); s.unsubscribe() }
    })
  }

  private leechOnce (query: string, out: string, opts: NodeLeechOptions): Observable<LeechEvent> {
    let sink: FileSink | null = null
    let h: HeldDownload<MappedFile> | null = null
    // a verified copy already at its place (see alreadyHere), mapped and hashed: served as a finished download
    let here: VerifiedCopy | null = null
    let pending: (() => Uint8Array) | null = null
    let fileId: string | null = null
    const links = this.linksFor()
    const { downloadLimit, listing, ...leechOpts } = opts
    const own = downloadLimit === undefined || !Number.isFinite(downloadLimit) || downloadLimit <= 0 ? undefined : new TokenBucket({ rate: downloadLimit })
    const node = this.downloadBudget
    // both caps hold: the node's (shared by its downloads) and this download's own
    const budget = own === undefined ? node : node === undefined ? own : { take: (n: number) => node.take(n).pipe(take(1), switchMap(() => own.take(n))), give: (n: number) => { node.give(n); own.give(n) } }
    return leech(query, {
      // a random sample of holders: in a big swarm every leecher gets its own neighbours (the
      // download leaves this node out, under the id it has now: selfId)
      tracker: { files: () => listing?.files(query) ?? this.trackerClient.files(), nodes: (id) => this.trackerClient.sample(id, 2 * FAN_OUT) },
      link: links.link,
      unlink: links.unlink,
      openSink: (meta) => { fileId = meta.hash; sink = new FileSink(meta, out, this.pool); return sink },
      // (a download stopped while it hashes the copy stops the hashing, and maps nothing)
      alreadyHere: (meta) => new Observable<string | null>((sub) => {
        let off = false
        verifiedCopy(out, meta, () => off).then((found) => {
          if (found !== null && off) { found.file.close(); return }
          if (found !== null) here = found
          sub.next(found?.file.path ?? null)
          sub.complete()
        }, (err: unknown) => sub.error(err))
        return () => { off = true }
      }),
      // (read at each use: a node told its id is in use takes a new one, running downloads too)
      selfId: () => this.nodeId,
      selfPort: this.listen?.port,
      budget,
      onPending: (p) => { pending = p },
      // peers that asked us about this file download it too: they may serve us in turn
      askers: this.askers.pipe(filter((a) => a.fileId === fileId), map((a) => a.peer)),
    }, leechOpts).pipe(
      tap((e) => {
        switch (e.event) {
          case 'start': {
            if (here !== null) return // (nothing to fetch: served once done)
            const meta: FileMetaData = { name: e.name, hash: e.fileId, size: e.size, blockSize: e.blockSize, pieces: e.pieces }
            const s = sink as FileSink | null
            // a resumed download holds what the last run verified and wrote: it serves those too
            const held = new HeldDownload(meta, s?.present ?? [], () => (s as FileSink).source(), () => pending)
            h = held
            this.held.set(meta.hash, held)
            // listed at the tracker at once, with what it holds (see listedHeld)
            this.fire(this.publishHeld(held))
            // pieces are served only once verified against hashes checked against the root
            if (!this.served.has(meta.hash)) this.served.set(meta.hash, held.serving())
            return
          }
          case 'hashes':
            // a resumed download serves its pieces from now on (listed since its start: this refreshes what it holds)
            if (h?.gotHashes(e.pieceHashes) === true) this.fire(this.publishHeld(h))
            return
          case 'piece':
            this.downloaded += e.bytes
            if (h === null) return
            if (h.stored(e.index)) this.fire(this.publishHeld(h))
            this.kicker.poke()
            return
          case 'done': {
            const found = here as VerifiedCopy | null
            if (found !== null && this.held.get(found.meta.hash)?.complete === true) {
              // (the same file asked again under another name or id prefix: it is served already)
              found.file.close()
              here = null
              return
            }
            if (found !== null) {
              // every piece, with the hash list it was just hashed into (its file id matched)
              const held = new HeldDownload(found.meta, Array.from({ length: found.meta.pieces }, (_, i) => i), () => found.file, () => null)
              held.gotHashes(found.pieceHashes)
              h = held
              this.held.set(found.meta.hash, held)
            }
            if (h === null) return
            const file = found?.file ?? MappedFile.open(e.path)
            this.served.set(h.meta.hash, h.completed(file, () => file.checkSize()))
            this.fire(this.publishHeld(h))
          }
        }
      }),
      finalize(() => {
        links.release()
        // a verified copy found but never served (the download was stopped before its done)
        const found = here as VerifiedCopy | null
        if (found !== null && (h as HeldDownload<MappedFile> | null)?.file !== found.file) found.file.close()
        // an unfinished download is no longer served once its sink is closed
        const cur = h as HeldDownload | null
        if (cur !== null && !cur.complete && this.held.get(cur.meta.hash) === cur) {
          this.served.delete(cur.meta.hash)
          this.held.delete(cur.meta.hash)
          // nor listed at the tracker (it was from its start): no one is sent here for it
          if (!this.shared.has(cur.meta.hash)) this.unlist(cur.meta.hash)
        }
      }),
    )
  }

  /** Stop everything: heartbeats, serving, sockets, mappings. Safe to call twice. */
  async close (): Promise<void> {
    // the tracker forgets this node now, not a TTL later (when it hears; the sockets close after)
    // (a node that never listened was never listed: ls and status say nothing)
    const leaving = this.closed || this.udp === null || this.listen === null
      ? Promise.resolve()
      : lastValueFrom(this.trackerClient.leave(this.nodeId, this.listen.port, LEAVE_WAIT_MS), { defaultValue: null })
    this.closed = true
    this.closing.next()
    for (const s of this.subs.splice(0)) s.unsubscribe()
    for (const s of this.oneOffs) s.unsubscribe()
    this.oneOffs.clear()
    this.kicker.close()
    for (const l of this.links.values()) l.conn.close()
    this.links.clear()
    await this.server?.close()
    this.server = null
    await leaving
    this.udp?.close(); this.udp = null
    for (const f of this.local) f.file.close()
    for (const h of this.held.values()) h.file?.close()
    this.shareEvents.complete()
    this.askers.complete()
  }

  /** Peers connected to this node's piece server right now (for `peer`'s status line). */
  get peerConnections (): number { return this.server?.connections ?? 0 }
}

/** The tracker lists a file of ours under a root other than the one its pieces hash to (with the same segmentation). */
function disputesRoot (meta: FileMetaData, f: LocalFile): boolean {
  return meta.blockSize === f.blockSize && meta.root !== undefined && meta.root !== f.root
}

/** A file found already at its place in --out, verified: mapped, with its piece hashes. */
interface VerifiedCopy { meta: FileMetaData, file: MappedFile, pieceHashes: Buffer }

/**
 * A verified copy of `meta` at `out/NAME` (a regular file of its size whose SHA-256 is its id,
 * read without following a link); null when there is none (no such file, another one, a name
 * unsafe to write: the download says so when it opens its .part).
 */
async function verifiedCopy (out: string, meta: FileMetaData, cancelled: () => boolean): Promise<VerifiedCopy | null> {
  let file: MappedFile
  let st: fs.Stats
  try {
    const p = path.join(out, ...safeRelativeName(meta.name).split('/'))
    st = await fs.promises.lstat(p)
    if (!st.isFile() || st.size !== meta.size) return null
    file = MappedFile.open(p, undefined, { under: out, listed: st })
  } catch {
    return null
  }
  try {
    const h = await hashFile(file, meta.blockSize, cancelled)
    if (h.fileId === meta.hash) {
      // (what a get stopped while it named this copy left beside it goes now: see tidyAfterCommit)
      try { tidyAfterCommit(out, meta.name, meta.hash, st) } catch { /* left as it was */ }
      return { meta, file, pieceHashes: h.pieceHashes }
    }
  } catch { /* changed while hashed (not a copy to trust), or called off */ }
  file.close()
  return null
}
