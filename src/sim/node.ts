import { catchError, defer, EMPTY, filter, first, map, type Observable, repeat, Subject, type Subscription, tap, timer } from 'rxjs'
import { FAN_OUT, FRESH_QUEUE_FACTOR, HEARTBEAT_MS, MAX_PEERS_PER_REPLY } from '../limits'
import { TrackerClient, type TrackerTransport } from '../net/trackerClient'
import type { PeerLink } from '../net/peerConnection'
import { ClusterTable } from '../peer/clusterTable'
import { heartbeats } from '../peer/heartbeat'
import { leech, type LeechEvent, type LeechOptions } from '../peer/leech'
import { HeldDownload } from '../peer/held'
import { servedShare, serveRequest, serveWatch, WatchKicker, type ServeContext, type ServedFile } from '../peer/serve'
import type { FileMetaData, PeerAddress, TrackerMessage } from '../protocol/messages'
import type { Endpoint } from '../tracker/flow'
import type { SimHost, SimNetwork } from './network'
import { PieceTags, SimSink, type SimFile } from './pieces'
import type { SimScheduler } from './scheduler'

/** Port every simulated node serves peers on (hosts differ). */
export const SIM_PEER_PORT = 7000
const SIM_UDP_PORT = 7001

const nothing = { size: 0, view: () => [] }

export interface SimNodeOptions {
  host: SimHost
  net: SimNetwork
  scheduler: SimScheduler
  tracker: Endpoint
  random: () => number
  tags: PieceTags
  leech?: LeechOptions
  heartbeatMs?: number
}

/**
 * One simulated node: the production pieces of `Lp2pNode` (tracker client with its handshake and
 * retries, heartbeat loop, cluster table, `serveRequest`, the `leech` flow with its picker,
 * timeouts and bans) wired to the simulated network instead of sockets and files.
 */
export class SimNode {
  nodeId = ''
  readonly cluster = new ClusterTable()
  private client!: TrackerClient
  private readonly served = new Map<string, ServedFile>()
  private readonly links = new Map<string, PeerLink>()
  private subs: Subscription[] = []
  private seeding: SimFile | null = null
  private held: HeldDownload | null = null
  /** What a download stored so far (survives a crash, as a .part and its state do). */
  private stored: Uint8Array | null = null
  /** Virtual time when the download was verified. */
  doneAt: number | null = null
  /** Downloads that ended in an error and were started again. */
  retries = 0
  lastError: string | null = null
  readonly endpoint: Endpoint
  private readonly kicker: WatchKicker
  /** Peers that asked this node about a file (for its download: candidate sources). */
  private readonly askers = new Subject<{ fileId: string, peer: PeerAddress }>()

  constructor (private readonly o: SimNodeOptions) {
    this.endpoint = { address: o.host.host, port: SIM_UDP_PORT }
    const h = o.host
    const busy = (passes: boolean): boolean => h.upFree - o.scheduler.now() > (passes ? FRESH_QUEUE_FACTOR : 1) * h.queueMs
    const ctx: ServeContext = { file: (id) => this.served.get(id), cluster: this.cluster, busy, uploadRate: h.opts.upload, onAsker: (fileId, peer) => this.askers.next({ fileId, peer }) }
    h.serve = (msg, remote) => serveRequest(msg, ctx, remote)
    h.watch = (msg, remote) => serveWatch(msg, ctx, o.scheduler, remote)
    // an idle uplink (or one that just stored a piece) tells its watchers what it has
    this.kicker = new WatchKicker(() => this.served.values(), () => h.alive && h.upFree <= o.scheduler.now(), o.scheduler)
    h.onIdle = () => this.kicker.poke()
    h.onSend = (msg) => {
      const held = this.held
      if (msg.type === 'piece' && msg.bitfield !== undefined && held !== null && !held.complete && msg.clusterName === held.meta.hash) msg.bitfield = held.bits.slice()
    }
  }

  get host (): string { return this.o.host.host }
  get uploaded (): number { return this.o.host.uploaded }
  get downloaded (): number { return this.o.host.downloaded }
  get alive (): boolean { return this.o.host.alive }
  get piecesHeld (): number { return this.held?.have ?? 0 }

  private newIdentity (): void {
    // a restarted process is a new node to the tracker and its neighbours
    this.nodeId = Array.from({ length: 4 }, () => ((this.o.random() * 0x100000000) >>> 0).toString(16).padStart(8, '0')).join('')
    const incoming = new Subject<TrackerMessage>()
    const transport: TrackerTransport = {
      name: `${this.o.tracker.address}:${this.o.tracker.port}`,
      send: (msg) => this.o.net.sendDatagram(this.endpoint, this.o.tracker, msg),
      incoming$: incoming,
    }
    this.o.host.onDatagram = (msg) => incoming.next(msg)
    this.client = new TrackerClient(transport, { scheduler: this.o.scheduler, nextTx: () => (this.o.random() * 0x100000000) >>> 0 })
    this.links.clear()
  }

  /** Share a complete file (the initial seeder). */
  seed (file: SimFile): void {
    this.newIdentity()
    this.seeding = file
    this.served.set(file.meta.hash, servedShare(file.meta, () => nothing, () => file.pieceHashes, undefined, () => this.o.scheduler.now()))
    this.subs.push(this.publishSeed().subscribe())
    this.subs.push(this.beat())
  }

  private publishSeed (): Observable<unknown> {
    const f = this.seeding
    if (f === null) return EMPTY
    const m = f.meta
    return this.client.request({ type: 'publish', nodeId: this.nodeId, port: SIM_PEER_PORT, name: m.name, hash: m.hash, size: m.size, blockSize: m.blockSize, root: f.root }).pipe(catchError(() => EMPTY))
  }

  private publishHeld (): Observable<unknown> {
    const h = this.held
    if (h === null) return EMPTY
    return this.client.request(h.publish(this.nodeId, SIM_PEER_PORT)).pipe(catchError(() => EMPTY))
  }

  private beat (): Subscription {
    return heartbeats({
      periodMs: this.o.heartbeatMs ?? HEARTBEAT_MS,
      scheduler: this.o.scheduler,
      random: this.o.random,
      announce: () => this.client.request({ type: 'announce', nodeId: this.nodeId, port: SIM_PEER_PORT, files: this.fileCount, uploaded: this.uploaded, downloaded: this.downloaded }),
      republish: () => [this.publishSeed(), ...(this.held !== null ? [this.publishHeld()] : [])],
      regular: () => [this.refreshCluster(), ...(this.held !== null && !this.held.complete ? [this.publishHeld()] : [])],
    }).subscribe()
  }

  // a download is listed at the tracker from its start, as Lp2pNode lists it (see its listedHeld)
  private get fileCount (): number { return (this.seeding === null ? 0 : 1) + (this.held !== null ? 1 : 0) }

  private refreshCluster (): Observable<unknown> {
    const id = this.seeding?.meta.hash ?? this.held?.meta.hash
    if (id === undefined) return EMPTY
    return this.client.sample(id, MAX_PEERS_PER_REPLY).pipe(
      tap((nodes) => this.cluster.replace(id, nodes.filter((n) => n.nodeId !== this.nodeId).map((n) => ({ nodeId: n.nodeId, host: n.host, port: n.port })))),
      catchError(() => EMPTY),
    )
  }

  private link (p: PeerAddress): PeerLink {
    let l = this.links.get(p.nodeId)
    if (l === undefined) { l = this.o.net.link(this.o.host, p); this.links.set(p.nodeId, l) }
    return l
  }

  /** Download `name` (resuming from what was stored before a crash); again after a failure. */
  download (name: string): void {
    if (this.nodeId === '') this.newIdentity()
    if (this.subs.length === 0) this.subs.push(this.beat())
    this.subs.push(leech(name, {
      tracker: { files: () => this.listed(name), nodes: (id) => this.client.sample(id, 2 * FAN_OUT) },
      link: (p) => this.link(p),
      openSink: (meta) => {
        this.stored ??= new Uint8Array(meta.pieces)
        return new SimSink(meta, this.o.tags, this.stored)
      },
      scheduler: this.o.scheduler,
      selfId: this.nodeId,
      selfPort: SIM_PEER_PORT,
      random: this.o.random,
      onPending: (p) => { this.pending = p },
      askers: this.askers.pipe(filter((a) => a.fileId === this.held?.meta.hash), map((a) => a.peer)),
    }, this.o.leech).pipe(
      tap((e) => this.on(e)),
      catchError((err: Error) => {
        // as Lp2pNode does with a download that ended unfinished: no longer served, nor listed at
        // the tracker (what it stored stays, as a .part does)
        const h = this.held
        if (h !== null && !h.complete) {
          this.served.delete(h.meta.hash)
          this.held = null
          this.subs.push(this.client.request({ type: 'withdraw', nodeId: this.nodeId, port: SIM_PEER_PORT, fileId: h.meta.hash }).pipe(catchError(() => EMPTY)).subscribe())
        }
        // what a script would do with a failed `get`: run it again (it resumes)
        this.lastError = err.message
        this.retries++
        this.o.scheduler.schedule(() => { if (this.alive && this.doneAt === null) this.download(name) }, 1000)
        return EMPTY
      }),
    ).subscribe())
  }

  /**
   * The tracker's file list once it names `name`: a leecher is a `get` started after the file was
   * published, but a leecher's query can reach the tracker before the seeder's publish (a nearer
   * tracker with per-link latencies, a publish datagram lost and sent again). It asks again 20 ms
   * after each answer that lacks the file, for a second (virtual), then takes the list as it is
   * (the download then fails, and is started again a second later).
   */
  private listed (name: string): Observable<FileMetaData[]> {
    const until = this.o.scheduler.now() + 1000
    return defer(() => this.client.files()).pipe(
      repeat({ delay: () => this.o.scheduler.now() >= until ? EMPTY : timer(20, this.o.scheduler) }),
      first((files) => files.some((f) => f.name === name), [] as FileMetaData[]),
    )
  }

  /** The running download's view of the pieces in flight (served in its `have` replies). */
  private pending: (() => Uint8Array) | null = null

  /** Leech events by kind (peer-dropped, piece-failed…), for reports. */
  readonly events: Record<string, number> = {}

  /** Peers this node's downloads dropped for bad data (banned after bad pieces, or a hash list that did not match the root). */
  droppedForBadData = 0

  private on (e: LeechEvent): void {
    this.events[e.event] = (this.events[e.event] ?? 0) + 1
    if (e.event === 'peer-dropped' && e.code === 'ERR_PROTOCOL') this.droppedForBadData++
    switch (e.event) {
      case 'start': {
        const meta: FileMetaData = { name: e.name, hash: e.fileId, size: e.size, blockSize: e.blockSize, pieces: e.pieces }
        const stored = this.stored
        const present = stored === null ? [] : Array.from({ length: e.pieces }, (_, i) => i).filter((i) => stored[i] === 1)
        const held = new HeldDownload(meta, present, () => nothing, () => this.pending, () => this.o.scheduler.now())
        this.held = held
        this.served.set(meta.hash, held.serving())
        // listed at the tracker at once, with what it holds
        this.subs.push(this.publishHeld().subscribe())
        return
      }
      case 'hashes':
        if (this.held?.gotHashes(e.pieceHashes) === true) this.subs.push(this.publishHeld().subscribe())
        return
      case 'piece': {
        const h = this.held
        if (h === null) return
        if (h.stored(e.index)) this.subs.push(this.publishHeld().subscribe())
        this.kicker.poke()
        return
      }
      case 'done': {
        const h = this.held
        this.doneAt = this.o.scheduler.now()
        if (h === null) return
        // served from here on as Lp2pNode serves a finished download
        this.served.set(h.meta.hash, h.completed(nothing))
        this.subs.push(this.publishHeld().subscribe())
      }
    }
  }

  /** The process dies: no more heartbeats, transfers or answers. What it stored stays. */
  crash (): void {
    this.o.net.crash(this.host)
    this.kicker.close()
    for (const s of this.subs.splice(0)) s.unsubscribe()
    this.served.clear()
    this.held = null
    this.pending = null
  }

  /** Started again (a new process, a new node id), resuming its download. */
  restart (name: string): void {
    this.o.net.restart(this.host)
    if (this.seeding !== null) { this.seed(this.seeding); return } // seed() takes a new identity itself
    this.newIdentity()
    if (this.doneAt === null) this.download(name)
  }

  stop (): void { for (const s of this.subs.splice(0)) s.unsubscribe(); this.kicker.close() }
}
