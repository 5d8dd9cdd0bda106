import { Observable, type Subscriber, type Subscription, type Unsubscribable } from 'rxjs'
import { ConnectionClosedError, RemoteError } from '../errors'
import { BUSY_QUEUE_MS, RAREST_FIRST_AGE_MS } from '../limits'
import type { Frame } from '../protocol/frames'
import type { PeerAddress, PeerReply, PeerRequest, Probe, TrackerMessage } from '../protocol/messages'
import type { PeerLink, WithoutReq } from '../net/peerConnection'
import { sendPriority, type Outgoing } from '../peer/serve'
import type { Endpoint } from '../tracker/flow'
import type { Queued, SimScheduler } from './scheduler'

/**
 * The simulated network: datagrams (to and from the tracker) and request/reply links between
 * peers, in virtual time.
 *
 * Model (per frame, store and forward):
 * - every message takes its link's latency one way: `latencyMs`, or with `maxLatencyMs` a latency
 *   drawn for each pair of hosts, uniform between the two, the same both ways and for the whole
 *   run (a LAN with near and far racks); the draw is a hash of the pair and `latencySalt`, so it
 *   takes nothing from `random`;
 * - a reply with a payload (a piece, a hash list) occupies the sender's uplink for
 *   bytes / upload (frames leave one after another, the piece with the fewest copies first, as
 *   the production upload budget sends them: see `enqueue`), then the
 *   receiver's downlink for bytes / download (a capped downlink takes frames one after another,
 *   in the order their first bytes arrive); it arrives when both are done and the latency has
 *   passed. Control messages (probes, cluster queries, headers) take latency only: they are tiny
 *   next to pieces;
 * - datagrams are lost with probability `loss` (TCP links are not: TCP retransmits);
 * - a partition splits hosts into groups: nothing crosses between groups. Datagrams are lost;
 *   frames on peer links wait and cross when the partition heals (TCP retransmits them), unless
 *   the asker gave up first (the production timeouts);
 * - a watch (a probe that waits for news) is held by the production `serveWatch` at the peer; an
 *   asker that stops waiting withdraws it at once (a real peer drops it when the next watch of
 *   that connection comes, or answers it into the void); when a host's uplink sends its last
 *   queued byte, `onIdle` runs (the node kicks its held watches, as `Lp2pNode` does when its
 *   server's piece queue empties);
 * - a crashed host answers nothing: requests to it fail with a connection error after a round
 *   trip (a reset), frames it had not delivered yet are lost.
 */
export interface NetworkOptions {
  scheduler: SimScheduler
  latencyMs: number
  /** Links' latencies spread between `latencyMs` and this (default: all `latencyMs`). */
  maxLatencyMs?: number
  /** Mixed into the per-link draw (a scenario passes its seed). */
  latencySalt?: number
  loss?: number
  random: () => number
}

/** What a host does with a peer request: the production `serveRequest` behind a node. */
export type ServeFn = (msg: PeerRequest, remote: { host: string }) => Outgoing
/** What a host does with a watch (a probe with `since`): the production `serveWatch`. */
export type WatchFn = (msg: Probe, remote: { host: string }) => Observable<Outgoing>

export interface HostOptions {
  /** Bytes per second (Infinity: no cap). */
  upload: number
  download: number
}

/** A reply with a payload waiting for its sender's uplink: `send` starts it and says when its last byte leaves. */
interface UpItem { priority: number, at: number, epoch: number, send: (now: number) => number }

export class SimHost {
  alive = true
  /** Bumped on every crash: replies prepared before it are never delivered. */
  epoch = 0
  /** When the uplink will have sent everything queued on it (the backlog, in time). */
  upFree = 0
  /** Replies with a payload waiting for the uplink, and whether one is leaving now. */
  readonly upQueue: UpItem[] = []
  sending = false
  downFree = 0
  /** Piece requests are declined (BUSY) while more than this much is queued on the uplink (the production threshold). */
  queueMs = BUSY_QUEUE_MS
  uploaded = 0
  downloaded = 0
  group = 0
  serve: ServeFn | null = null
  watch: WatchFn | null = null
  /**
   * A reply with a payload starts leaving the uplink (after the frames queued before it): a real
   * peer server builds the header then, so a piece header's bitfield is as fresh as at that moment.
   */
  onSend: ((msg: PeerReply) => void) | null = null
  /** The uplink sent its last queued byte (what a peer server sees when its send queue empties). */
  onIdle: (() => void) | null = null
  onDatagram: ((msg: TrackerMessage, from: Endpoint) => void) | null = null
  constructor (readonly host: string, public opts: HostOptions, /** Index in the network (for per-link draws). */ readonly index = 0) {}
}

export interface NetworkStats {
  datagrams: number
  datagramsLost: number
  peerRequests: number
  /** Replies that carried a piece or a hash list. */
  payloads: number
  payloadBytes: number
  /** Error replies by code (declines: BUSY, SEEDED; NOT_FOUND…). */
  errors: Record<string, number>
  /** Peer requests by type (probe, find_cluster, get_hashes, leech). */
  requests: Record<string, number>
}

export class SimNetwork {
  private readonly hosts = new Map<string, SimHost>()
  readonly stats: NetworkStats = { datagrams: 0, datagramsLost: 0, peerRequests: 0, payloads: 0, payloadBytes: 0, errors: {}, requests: {} }
  /** Builds the payload bytes a reply carries (the simulation's piece store decides what they are). */
  payloadOf: (host: SimHost, out: Outgoing) => Buffer = (_h, out) => Buffer.alloc(out.payload?.length ?? 0)

  constructor (private readonly opts: NetworkOptions) {}

  /** `index` places the host in the per-link latency draw (default: the order hosts are added). */
  addHost (host: string, opts: HostOptions, index = this.hosts.size): SimHost {
    if (this.hosts.has(host)) throw new Error(`host ${host} exists`)
    const h = new SimHost(host, opts, index)
    this.hosts.set(host, h)
    return h
  }

  host (host: string): SimHost | undefined { return this.hosts.get(host) }

  /** Split the network: hosts in `isolated` can reach only each other. */
  partition (isolated: string[], group = 1): void { for (const h of isolated) { const x = this.hosts.get(h); if (x !== undefined) x.group = group } }
  heal (): void {
    for (const h of this.hosts.values()) h.group = 0
    for (const f of this.afterHeal.splice(0)) f()
  }

  /** Frames held by a partition, sent on when it heals. */
  private readonly afterHeal: Array<() => void> = []

  private reachable (a: SimHost, b: SimHost): boolean { return a.group === b.group }

  /** One-way latency between two hosts, ms: the same both ways and for the whole run. */
  latency (a: SimHost, b: SimHost): number {
    const lo = this.opts.latencyMs
    const hi = this.opts.maxLatencyMs ?? lo
    if (!(hi > lo)) return lo
    return lo + (hi - lo) * pairHash(Math.min(a.index, b.index), Math.max(a.index, b.index), this.opts.latencySalt ?? 0)
  }

  crash (host: string): void {
    const h = this.hosts.get(host)
    if (h === undefined) return
    h.alive = false
    h.epoch++
    h.upQueue.length = 0
    h.sending = false
  }

  restart (host: string): void {
    const h = this.hosts.get(host)
    if (h === undefined) return
    h.alive = true
    h.upFree = h.downFree = this.opts.scheduler.now()
  }

  /**
   * Queue a payload on `h`'s uplink. Frames leave one at a time, the lowest priority first (a
   * piece: `sendPriority`, fewest copies first, moving up one for every RAREST_FIRST_AGE_MS it
   * waited, as the production upload budget orders them), first come first served among equals.
   */
  enqueue (h: SimHost, item: UpItem): void {
    h.upQueue.push(item)
    if (!h.sending) this.pump(h)
  }

  private pump (h: SimHost): void {
    const q = h.upQueue
    const now = this.opts.scheduler.now()
    let i = 0
    const key = (x: UpItem): number => x.priority - (now - x.at) / RAREST_FIRST_AGE_MS
    for (let j = 1; j < q.length; j++) if (key(q[j]) < key(q[i])) i = j
    const item = q.length === 0 ? undefined : q.splice(i, 1)[0]
    // the last queued byte left: the node tells its held watches what it has
    if (item === undefined) { h.sending = false; if (h.alive) h.onIdle?.(); return }
    h.sending = true
    const done = item.send(now)
    this.at(done - now, () => { if (h.epoch === item.epoch) this.pump(h) })
  }

  private at (delay: number, f: () => void): { cancel: () => void } { return this.opts.scheduler.at(delay, f) }

  sendDatagram (from: Endpoint, to: Endpoint, msg: TrackerMessage): void {
    this.stats.datagrams++
    const a = this.hosts.get(from.address)
    const b = this.hosts.get(to.address)
    if (a === undefined || b === undefined || !a.alive || !this.reachable(a, b) || ((this.opts.loss ?? 0) > 0 && this.opts.random() < (this.opts.loss ?? 0))) {
      this.stats.datagramsLost++
      return
    }
    this.at(this.latency(a, b), () => { if (b.alive && b.onDatagram !== null) b.onDatagram(msg, from) })
  }

  /** A link from `from` to a peer: the same interface as a TCP PeerConnection. */
  link (from: SimHost, peer: PeerAddress): PeerLink {
    let nextReq = 1
    return {
      peer,
      close: () => {},
      request: (msg: WithoutReq<PeerRequest>) => new Observable<Frame>((sub) => {
        this.stats.peerRequests++
        this.stats.requests[msg.type] = (this.stats.requests[msg.type] ?? 0) + 1
        const r = new SimRequest(this, from, this.hosts.get(peer.host), peer, msg, nextReq++, sub)
        r.start()
        return r
      }),
    }
  }

  /** @internal */
  get scheduler (): SimScheduler { return this.opts.scheduler }
  /** @internal */
  defaultLatency (): number { return this.opts.latencyMs }
  /** @internal */
  canReach (a: SimHost, b: SimHost): boolean { return this.reachable(a, b) }
  /** @internal a partition holds `f` until it heals. */
  holdForHeal (f: () => void): void { this.afterHeal.push(f) }
  /** @internal */
  later (delay: number, f: () => void): void { this.at(delay, f) }
}

/**
 * One request on a simulated link and its reply, in virtual time. It is its own entry in the
 * scheduler's queue (it waits for one thing at a time: its delivery, then its reply's landing),
 * and its own teardown: a big run makes one for every message, and a closure and a timer per
 * step were a large part of its garbage.
 */
class SimRequest implements Queued, Unsubscribable {
  time = 0
  seq = 0
  pos = -1
  slot = -1
  private step: 'deliver' | 'fail' | 'land' = 'deliver'
  private readonly lat: number
  /** What lands next: the reply, the sender's epoch when it was sent, its payload. */
  private out: Outgoing | null = null
  private epoch = 0
  private payload: Buffer | undefined = undefined
  private held: Subscription | null = null

  constructor (private readonly net: SimNetwork, private readonly from: SimHost, private readonly to: SimHost | undefined, private readonly peer: PeerAddress, private readonly msg: WithoutReq<PeerRequest>, private readonly req: number, private readonly sub: Subscriber<Frame>) {
    this.lat = to === undefined ? net.defaultLatency() : net.latency(from, to)
  }

  start (): void {
    const to = this.to
    if (to === undefined || !to.alive) { this.queue('fail'); return }
    // across a partition the request waits for the heal (unless the asker gives up first)
    if (this.net.canReach(this.from, to)) this.queue('deliver')
    else this.net.holdForHeal(() => { if (!this.sub.closed) this.queue('deliver') })
  }

  /** Wait `lat`, then deliver the request or fail it. */
  private queue (step: 'deliver' | 'fail'): void {
    this.step = step
    this.net.scheduler.enqueue(this, this.lat)
  }

  execute (): void {
    if (this.step === 'deliver') this.deliver()
    else if (this.step === 'fail') this.sub.error(this.reset())
    else this.landing(this.out as Outgoing, this.epoch, this.payload)
  }

  private reset (): Error { return new ConnectionClosedError(`${this.peer.host}:${this.peer.port}`, 'connection reset') }

  private deliver (): void {
    const to = this.to as SimHost
    if (!to.alive || to.serve === null) { this.queue('fail'); return }
    const request = { ...this.msg, req: this.req } as PeerRequest
    if (request.type === 'probe' && request.since !== undefined && to.watch !== null) {
      this.held = to.watch(request, { host: this.from.host }).subscribe((out) => this.reply(out))
      return
    }
    // (a piece waits its turn on the uplink as in PeerServer, rarest first; a hash list, which
    // PeerServer answers without waiting for the budget, goes at priority 0: next, unless a
    // rare piece has waited long enough to age past it, 25 ms for a piece of one copy; a
    // small difference, kept so the figures measured with it stand)
    this.reply(to.serve(request, { host: this.from.host }), request.type === 'leech' ? sendPriority(request) : 0)
  }

  private reply (out: Outgoing, priority = 0): void {
    const net = this.net
    const to = this.to as SimHost
    const from = this.from
    if (out.payload === undefined) { this.landAfter(out, to.epoch, undefined, this.lat); return }
    const bytes = out.payload.length
    const payload = net.payloadOf(to, out)
    const upTime = Number.isFinite(to.opts.upload) ? bytes * 1000 / to.opts.upload : 0
    const now = net.scheduler.now()
    // the backlog in time (what BUSY decisions see), whatever order the frames leave in
    to.upFree = Math.max(now, to.upFree) + upTime
    net.stats.payloads++
    net.stats.payloadBytes += bytes
    const epoch = to.epoch
    const lat = this.lat
    net.enqueue(to, {
      priority,
      epoch,
      at: now,
      send: (upStart) => {
        to.onSend?.(out.msg)
        const upDone = upStart + upTime
        // (a capped downlink takes frames in the order their first bytes arrive: it is booked then)
        if (Number.isFinite(from.opts.download)) this.net.later(lat, () => this.book(out, epoch, payload, upDone + lat, bytes))
        else this.landAfter(out, epoch, payload, upDone + lat - upStart)
        return upDone
      },
    })
  }

  /**
   * The first byte of a reply with a payload reached a capped downlink (a timer of its own: only
   * runs with `--download` take this step): the downlink takes it from now (or once the frames
   * before it are in) at its rate; it lands when its last byte is in, and not before `upDone`
   * (its last byte left the uplink, plus the latency).
   */
  private book (out: Outgoing, epoch: number, payload: Buffer | undefined, upDone: number, bytes: number): void {
    const from = this.from
    const now = this.net.scheduler.now()
    // (the sender crashed since: the rest of the frame never comes, the asker sees the reset)
    if ((this.to as SimHost).epoch !== epoch) { this.landAfter(out, epoch, payload, 0); return }
    const arrive = Math.max(upDone, Math.max(now, from.downFree) + bytes * 1000 / from.opts.download)
    from.downFree = arrive
    this.landAfter(out, epoch, payload, arrive - now)
  }

  /**
   * The reply lands after `delay` (bytes on their way arrive even if the asker stopped waiting:
   * TCP does not call them back). A second reply while one is on its way (a watch answers once;
   * nothing else answers twice) takes a timer of its own.
   */
  private landAfter (out: Outgoing, epoch: number, payload: Buffer | undefined, delay: number): void {
    if (this.pos >= 0) { this.net.later(delay, () => this.landing(out, epoch, payload)); return }
    this.out = out; this.epoch = epoch; this.payload = payload
    this.step = 'land'
    this.net.scheduler.enqueue(this, delay)
  }

  private landing (out: Outgoing, epoch: number, payload: Buffer | undefined): void {
    const net = this.net
    const to = this.to as SimHost
    const from = this.from
    const sub = this.sub
    if (!net.canReach(from, to)) { net.holdForHeal(() => this.landAfter(out, epoch, payload, this.lat)); return }
    if (!to.alive || to.epoch !== epoch || !from.alive) { if (!sub.closed) sub.error(this.reset()); return }
    if (payload !== undefined) { from.downloaded += payload.length; to.uploaded += payload.length }
    if (sub.closed) return
    const m = out.msg
    if (m.type === 'error') { net.stats.errors[m.code] = (net.stats.errors[m.code] ?? 0) + 1; sub.error(new RemoteError(m.code, m.message, m.retryMs)); return }
    sub.next(payload === undefined ? { msg: m } : { msg: m, payload })
    sub.complete()
  }

  /** The asker stopped waiting: a delivery or a reset not yet due is called off; a reply on its way still lands. */
  unsubscribe (): void {
    if (this.step !== 'land') this.net.scheduler.remove(this)
    this.held?.unsubscribe()
  }
}

/** A hash of (a, b, salt) in [0, 1): the per-link draw (murmur3's finalizer over the three words). */
function pairHash (a: number, b: number, salt: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b ^ 0xc2b2ae35, 0x27d4eb2f) ^ Math.imul(salt ^ 0x165667b1, 0x9e3779b1)
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return (h >>> 0) / 4294967296
}
