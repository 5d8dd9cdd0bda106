import { randomBytes } from 'node:crypto'
import { catchError, EMPTY, exhaustMap, finalize, from, last, map, mergeMap, type Observable, type Subscription, tap, timer, lastValueFrom, defaultIfEmpty } from 'rxjs'
import { HEARTBEAT_MS, MAX_BLOCK_SIZE } from '../limits'
import { log } from '../log'
import type { FileMetaData, PeerAddress } from '../protocol/messages'
import { bindUdp, type UdpPort } from '../net/udp'
import { TrackerClient } from '../net/trackerClient'
import { udpTrackerTransport } from '../net/udpTrackerTransport'
import { PeerConnection } from '../net/peerConnection'
import { PeerServer } from '../net/peerServer'
import { FileSink } from '../storage/fileSink'
import { BufferPool } from '../storage/bufferPool'
import type { Endpoint } from '../tracker/flow'
import { ClusterTable } from './clusterTable'
import { leech, type LeechEvent, type LeechOptions } from './leech'
import { serveRequest, type ServedFile } from './serve'
import { scanShare, type LocalFile } from './share'

export interface NodeOptions {
  tracker: Endpoint
  /** Address to bind (UDP to the tracker, TCP for peers). */
  host?: string
  /** TCP port for peers (0: any free port). */
  port?: number
  /** Folder whose files this node shares (and so serves). */
  share?: string
  heartbeatMs?: number
  /** Tracker request tuning (tests use short timeouts). */
  trackerTimeoutMs?: number
  trackerAttempts?: number
}

/**
 * A local-p2p node: wiring of adapters (UDP to the tracker, TCP to and from peers, mmap'd files)
 * around the flows. A sharing node hashes and publishes its folder, heartbeats, keeps a cluster
 * table and serves pieces; any node can leech.
 */
export class Lp2pNode {
  readonly nodeId = randomBytes(16).toString('hex')
  readonly cluster = new ClusterTable()
  private udp: UdpPort | null = null
  private tracker: TrackerClient | null = null
  private server: PeerServer | null = null
  private listen: Endpoint | null = null
  private readonly served = new Map<string, ServedFile & { local: LocalFile }>()
  private local: LocalFile[] = []
  private readonly subs: Subscription[] = []
  private readonly links = new Map<string, PeerConnection>()
  private readonly log = log.child({ module: 'node' })
  private refreshCursor = 0
  /** Piece buffers, sized for the largest block: reused across pieces and downloads. */
  private readonly pool = new BufferPool(64 * 1024 * 1024, MAX_BLOCK_SIZE)
  /** Bytes of piece payloads sent and received. */
  uploaded = 0
  downloaded = 0

  constructor (private readonly opts: NodeOptions) {}

  get trackerClient (): TrackerClient {
    if (this.tracker === null) throw new Error('node not started')
    return this.tracker
  }

  get address (): Endpoint | null { return this.listen }
  get sharedFiles (): LocalFile[] { return this.local }
  get publishedFiles (): FileMetaData[] { return [...this.served.values()].map((s) => s.meta) }

  async start (): Promise<void> {
    const host = this.opts.host ?? '127.0.0.1'
    this.udp = await bindUdp(host, 0, (err, to) => this.log.debug({ err: err.message, to }, 'udp send failed'))
    this.tracker = new TrackerClient(udpTrackerTransport(this.udp, this.opts.tracker), { timeoutMs: this.opts.trackerTimeoutMs, attempts: this.opts.trackerAttempts })
    if (this.opts.share === undefined) return
    this.local = await scanShare(this.opts.share)
    this.server = new PeerServer((m) => serveRequest(m, {
      file: (id) => this.served.get(id),
      cluster: this.cluster,
      onFileChanged: (id, err) => this.log.warn({ fileId: id, err: err.message }, 'shared file changed on disk: no longer served'),
    }), { host, port: this.opts.port ?? 0, onUpload: (n) => { this.uploaded += n } })
    this.listen = await this.server.start()
    await lastValueFrom(this.publishAll().pipe(defaultIfEmpty(null)))
    this.subs.push(this.heartbeats())
  }

  /** Publish every local file; remember the tracker's segmentation for each. */
  private publishAll (): Observable<FileMetaData> {
    const port = this.listen?.port ?? 0
    return from(this.local).pipe(
      mergeMap((f) => this.trackerClient.request({ type: 'publish', nodeId: this.nodeId, port, name: f.name, hash: f.fileId, size: f.size }).pipe(
        map((r) => r.meta),
        tap((meta) => this.served.set(meta.hash, { meta, local: f, source: f.file, checkSize: () => f.file.checkSize() })),
        catchError((err: Error) => { this.log.warn({ file: f.name, err: err.message }, 'publish failed'); return EMPTY }),
      ), 8),
    )
  }

  /** Announce every period; re-publish when the tracker lost us; refresh a few cluster rows. */
  private heartbeats (): Subscription {
    const period = this.opts.heartbeatMs ?? HEARTBEAT_MS
    return timer(period, period).pipe(
      exhaustMap(() => this.trackerClient.request({ type: 'announce', nodeId: this.nodeId, port: this.listen?.port ?? 0, files: this.served.size }).pipe(
        mergeMap((r) => r.resync ? this.publishAll().pipe(last(undefined, null)) : this.refreshClusters()),
        catchError((err: Error) => { this.log.warn({ err: err.message }, 'heartbeat failed; retrying next period'); return EMPTY }),
      )),
    ).subscribe()
  }

  /** Learn other holders of a few of our files (round robin) for the cluster table. */
  private refreshClusters (): Observable<unknown> {
    const ids = [...this.served.keys()]
    if (ids.length === 0) return EMPTY
    const batch = Array.from({ length: Math.min(8, ids.length) }, () => ids[this.refreshCursor++ % ids.length])
    return from(new Set(batch)).pipe(
      mergeMap((id) => this.trackerClient.nodes(id, 4).pipe(tap((nodes) => {
        for (const n of nodes) if (n.nodeId !== this.nodeId) this.cluster.add(id, { nodeId: n.nodeId, host: n.host, port: n.port })
      })), 4),
    )
  }

  private link (p: PeerAddress): PeerConnection {
    let c = this.links.get(p.nodeId)
    if (c === undefined) { c = new PeerConnection(p, this.pool); this.links.set(p.nodeId, c) }
    return c
  }

  /** Download a file by name or id prefix into `out`. Unsubscribe to stop (the .part stays). */
  leech (query: string, out: string, opts: LeechOptions = {}): Observable<LeechEvent> {
    return leech(query, {
      tracker: { files: () => this.trackerClient.files(), nodes: (id) => this.trackerClient.nodes(id) },
      link: (p) => this.link(p),
      openSink: (meta) => new FileSink(meta, out, this.pool),
      selfId: this.nodeId,
    }, opts).pipe(
      tap((e) => { if (e.event === 'piece') this.downloaded += e.bytes }),
      finalize(() => { for (const c of this.links.values()) c.close(); this.links.clear() }),
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
}
