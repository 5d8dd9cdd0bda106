import { randomBytes } from 'node:crypto'
import { catchError, defaultIfEmpty, EMPTY, finalize, from, last, lastValueFrom, map, mergeMap, Observable, repeat, switchMap, type Subscription, tap, timer } from 'rxjs'
import { retryBackoff } from '../../streams/retryBackoff'
import { HEARTBEAT_MS, MAX_BLOCK_SIZE } from '../limits'
import { log } from '../log'
import type { FileMetaData, PeerAddress } from '../protocol/messages'
import { bindUdp, type UdpPort } from '../net/udp'
import { TrackerClient } from '../net/trackerClient'
import { udpTrackerTransport } from '../net/udpTrackerTransport'
import { PeerConnection } from '../net/peerConnection'
import { PeerServer } from '../net/peerServer'
import { BufferPool } from '../storage/bufferPool'
import { FileSink } from '../storage/fileSink'
import { hashPieces, hashRoot } from '../storage/hashFile'
import { MappedFile } from '../storage/mappedFile'
import type { Endpoint } from '../tracker/flow'
import { TokenBucket } from '../../streams/rateLimit'
import { ClusterTable } from './clusterTable'
import { leech, type LeechEvent, type LeechOptions } from './leech'
import { setBit } from './picker'
import { SentCounts, serveRequest, type ServedFile } from './serve'
import { scanShare, type LocalFile } from './share'

export interface NodeOptions {
  tracker: Endpoint
  /** Address to bind (UDP to the tracker, TCP for peers). */
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
  /** Tracker request tuning (tests use short timeouts). */
  trackerTimeoutMs?: number
  trackerAttempts?: number
}

/** What this node holds of a file it is downloading or has downloaded. */
interface Held {
  meta: FileMetaData
  bits: Uint8Array
  have: number
  pieceHashes: Buffer | null
  source: () => MappedFile
  complete: boolean
}

/**
 * A local-p2p node: wiring of adapters (UDP to the tracker, TCP to and from peers, mmap'd files)
 * around the flows. It publishes what it shares, heartbeats with its counters, keeps a cluster
 * table and serves pieces: of its shared files and, from the first verified piece on, of what it
 * is downloading.
 */
export class Lp2pNode {
  readonly nodeId = randomBytes(16).toString('hex')
  readonly cluster = new ClusterTable()
  private udp: UdpPort | null = null
  private tracker: TrackerClient | null = null
  private server: PeerServer | null = null
  private listen: Endpoint | null = null
  private readonly served = new Map<string, ServedFile>()
  private readonly shared = new Map<string, LocalFile & { meta?: FileMetaData }>()
  private readonly held = new Map<string, Held>()
  private local: LocalFile[] = []
  private readonly subs: Subscription[] = []
  private readonly links = new Map<string, PeerConnection>()
  private readonly log = log.child({ module: 'node' })
  private refreshCursor = 0
  /** Piece buffers: reused across pieces and downloads. */
  private readonly pool = new BufferPool(64 * 1024 * 1024, MAX_BLOCK_SIZE)
  private readonly uploadBudget: TokenBucket | undefined
  private readonly downloadBudget: TokenBucket | undefined
  /** Bytes of piece payloads sent and received. */
  uploaded = 0
  downloaded = 0

  constructor (private readonly opts: NodeOptions) {
    const cap = (r: number | undefined): TokenBucket | undefined => r === undefined || !Number.isFinite(r) || r <= 0 ? undefined : new TokenBucket({ rate: r })
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
    const host = this.opts.host ?? '127.0.0.1'
    this.udp = await bindUdp(host, 0, (err, to) => this.log.debug({ err: err.message, to }, 'udp send failed'))
    this.tracker = new TrackerClient(udpTrackerTransport(this.udp, this.opts.tracker), { timeoutMs: this.opts.trackerTimeoutMs, attempts: this.opts.trackerAttempts })
    if (this.opts.share !== undefined) this.local = await scanShare(this.opts.share)
    for (const f of this.local) this.shared.set(f.fileId, f)
    if (this.opts.serve ?? true) {
      this.server = new PeerServer((m, remote) => serveRequest(m, {
        file: (id) => this.served.get(id),
        cluster: this.cluster,
        onFileChanged: (id, err) => this.withdraw(id, err),
      }, remote), { host, port: this.opts.port ?? 0, onUpload: (n) => { this.uploaded += n }, budget: this.uploadBudget })
      this.listen = await this.server.start()
      await lastValueFrom(this.publishShared().pipe(defaultIfEmpty(null)))
      this.subs.push(this.heartbeats())
    }
  }

  /** Publish every shared file with its root; re-hash pieces if the tracker chose another segmentation. */
  private publishShared (): Observable<FileMetaData> {
    const port = this.listen?.port ?? 0
    const publish = (f: LocalFile): Observable<FileMetaData> => this.trackerClient.request({ type: 'publish', nodeId: this.nodeId, port, name: f.name, hash: f.fileId, size: f.size, blockSize: f.blockSize, root: f.root }).pipe(map((r) => r.meta))
    return from(this.local).pipe(
      mergeMap((f) => publish(f).pipe(
        mergeMap((meta) => meta.blockSize === f.blockSize
          ? [meta]
          : from(hashPieces(f.file, meta.blockSize)).pipe(mergeMap((ph) => { f.blockSize = meta.blockSize; f.pieceHashes = ph; f.root = hashRoot(ph); return publish(f) }))),
        tap((meta) => {
          const entry = this.shared.get(f.fileId)
          if (entry !== undefined) entry.meta = meta
          this.served.set(meta.hash, { meta, source: () => f.file, checkSize: () => f.file.checkSize(), pieceHashes: () => f.blockSize === meta.blockSize ? f.pieceHashes : null, have: () => null, sent: new SentCounts(meta.pieces) })
        }),
        catchError((err: Error) => { this.log.warn({ file: f.name, err: err.message }, 'publish failed; retried with the next heartbeat'); return EMPTY }),
      ), 8),
    )
  }

  /**
   * A shared file changed or vanished on disk: stop serving it (reading a truncated mapping would
   * kill the process) and tell the tracker, so leechers stop being sent here for it.
   */
  private withdraw (fileId: string, err: Error): void {
    if (!this.served.has(fileId)) return
    this.log.warn({ fileId, err: err.message }, 'shared file changed on disk: withdrawn')
    this.served.delete(fileId)
    const f = this.shared.get(fileId)
    this.shared.delete(fileId)
    this.local = this.local.filter((l) => l.fileId !== fileId)
    f?.file.close()
    this.subs.push(this.trackerClient.request({ type: 'withdraw', nodeId: this.nodeId, port: this.listen?.port ?? 0, fileId }).pipe(
      catchError((e: Error) => { this.log.warn({ fileId, err: e.message }, 'withdraw not acknowledged; the next heartbeat resyncs'); return EMPTY }),
    ).subscribe())
  }

  /** Publish what this node holds of a download (partial or complete). */
  private publishHeld (h: Held): Observable<unknown> {
    const port = this.listen?.port ?? 0
    const m = h.meta
    return this.trackerClient.request(h.complete
      ? { type: 'publish', nodeId: this.nodeId, port, name: m.name, hash: m.hash, size: m.size, ...(h.pieceHashes === null ? {} : { blockSize: m.blockSize, root: hashRoot(h.pieceHashes) }) }
      : { type: 'publish', nodeId: this.nodeId, port, name: m.name, hash: m.hash, size: m.size, have: h.have }).pipe(
      catchError((err: Error) => { this.log.warn({ file: m.name, err: err.message }, 'publish failed; retried with the next heartbeat'); return EMPTY }),
    )
  }

  private get fileCount (): number { return this.shared.size + [...this.held.values()].filter((h) => h.have > 0).length }

  /** Announce every period with the counters; re-publish when the tracker lost us; refresh a few cluster rows. */
  private heartbeats (): Subscription {
    const period = this.opts.heartbeatMs ?? HEARTBEAT_MS
    const beat = timer(period).pipe(
      switchMap(() => this.trackerClient.request({ type: 'announce', nodeId: this.nodeId, port: this.listen?.port ?? 0, files: this.fileCount, uploaded: this.uploaded, downloaded: this.downloaded })),
      mergeMap((r) => r.resync
        ? from([this.publishShared(), ...[...this.held.values()].filter((h) => h.have > 0).map((h) => this.publishHeld(h))]).pipe(mergeMap((o) => o), last(undefined, null))
        : from([this.refreshClusters(), ...[...this.held.values()].filter((h) => !h.complete && h.have > 0).map((h) => this.publishHeld(h))]).pipe(mergeMap((o) => o), last(undefined, null))),
    )
    return beat.pipe(
      // the tracker is down: keep trying, with waits that double (with jitter, up to a minute) so
      // a restarted tracker is found again without every node knocking at the same instant
      tap({ error: (err: Error) => this.log.warn({ err: err.message }, 'heartbeat failed; backing off') }),
      retryBackoff({ retries: Infinity, initialMs: period, maxMs: 60_000, jitter: 0.5 }),
      repeat(),
    ).subscribe()
  }

  /** Learn other holders of a few of our files (round robin) for the cluster table. */
  private refreshClusters (): Observable<unknown> {
    const ids = [...this.served.keys()]
    if (ids.length === 0) return EMPTY
    const batch = Array.from({ length: Math.min(8, ids.length) }, () => ids[this.refreshCursor++ % ids.length])
    return from(new Set(batch)).pipe(
      // the tracker's live holders replace the row: a peer that died or withdrew leaves it
      mergeMap((id) => this.trackerClient.nodes(id, 4).pipe(tap((nodes) => {
        this.cluster.replace(id, nodes.filter((n) => n.nodeId !== this.nodeId).map((n) => ({ nodeId: n.nodeId, host: n.host, port: n.port })))
      })), 4),
    )
  }

  private link (p: PeerAddress): PeerConnection {
    let c = this.links.get(p.nodeId)
    if (c === undefined) { c = new PeerConnection(p, this.pool); this.links.set(p.nodeId, c) }
    return c
  }

  /**
   * Download a file by name or id prefix into `out`, serving its verified pieces to others
   * meanwhile. After `done`, the node keeps serving the complete file until it is closed.
   * Unsubscribe to stop (the .part stays).
   */
  leech (query: string, out: string, opts: LeechOptions = {}): Observable<LeechEvent> {
    let sink: FileSink | null = null
    let h: Held | null = null
    let pending: (() => Uint8Array) | null = null
    return leech(query, {
      tracker: { files: () => this.trackerClient.files(), nodes: (id) => this.trackerClient.nodes(id) },
      link: (p) => this.link(p),
      openSink: (meta) => { sink = new FileSink(meta, out, this.pool); return sink },
      selfId: this.nodeId,
      selfPort: this.listen?.port,
      budget: this.downloadBudget,
      onPending: (p) => { pending = p },
    }, opts).pipe(
      tap((e) => {
        switch (e.event) {
          case 'start': {
            const meta: FileMetaData = { name: e.name, hash: e.fileId, size: e.size, blockSize: e.blockSize, pieces: e.pieces }
            const s = sink as FileSink | null
            const held: Held = { meta, bits: new Uint8Array(Math.ceil(e.pieces / 8)), have: 0, pieceHashes: null, complete: false, source: () => (s as FileSink).source() }
            h = held
            this.held.set(meta.hash, held)
            // pieces are served only once verified against hashes checked against the root
            if (!this.served.has(meta.hash)) {
              this.served.set(meta.hash, {
                meta,
                source: () => held.source(),
                checkSize: () => {},
                pieceHashes: () => held.pieceHashes,
                have: () => held.pieceHashes === null ? new Uint8Array(held.bits.length) : held.bits,
                pending: () => held.complete || pending === null ? null : pending(),
              })
            }
            return
          }
          case 'hashes': if (h !== null) h.pieceHashes = e.pieceHashes; return
          case 'piece':
            this.downloaded += e.bytes
            if (h === null) return
            setBit(h.bits, e.index)
            if (++h.have === 1 && h.pieceHashes !== null) this.subs.push(this.publishHeld(h).subscribe())
            return
          case 'done': {
            if (h === null) return
            const held = h
            const file = MappedFile.open(e.path)
            held.complete = true
            held.have = held.meta.pieces
            held.source = () => file
            this.served.set(held.meta.hash, { meta: held.meta, source: () => file, checkSize: () => file.checkSize(), pieceHashes: () => held.pieceHashes, have: () => null })
            this.subs.push(this.publishHeld(held).subscribe())
          }
        }
      }),
      finalize(() => {
        for (const c of this.links.values()) c.close()
        this.links.clear()
        // an unfinished download is no longer served once its sink is closed
        const cur = h as Held | null
        if (cur !== null && !cur.complete) { this.served.delete(cur.meta.hash); this.held.delete(cur.meta.hash) }
      }),
    )
  }

  /** Stop everything: heartbeats, serving, sockets, mappings. Safe to call twice. */
  async close (): Promise<void> {
    for (const s of this.subs.splice(0)) s.unsubscribe()
    for (const c of this.links.values()) c.close()
    this.links.clear()
    await this.server?.close()
    this.server = null
    this.udp?.close(); this.udp = null
    for (const f of this.local) f.file.close()
  }

  /** Peers connected to this node's piece server right now (for `peer`'s status line). */
  get peerConnections (): number { return this.server?.connections ?? 0 }
}
