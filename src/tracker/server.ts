import { randomBytes } from 'node:crypto'
import { filter, map, mergeMap, of, type Subscription } from 'rxjs'
import { ProtocolError } from '../errors'
import { HEARTBEAT_MS, NODE_TTL_MS, TRACKER_RATE_PER_SOURCE } from '../limits'
import { SourceLimiter } from './sourceLimiter'
import { log } from '../log'
import { decodeDatagram, encodeDatagram } from '../protocol/codec'
import type { TrackerRequest } from '../protocol/messages'
import { bindUdp, type UdpPort } from '../net/udp'
import { trackerFlow, type Endpoint, type Inbound } from './flow'
import { Registry, type FileStore } from './registry'

export interface TrackerServerOptions {
  host?: string
  port?: number
  files?: FileStore
  ttlMs?: number
  heartbeatMs?: number
  /** Datagrams per second handled from one source address (twice that in a burst). */
  ratePerSource?: number
}

const REQUEST_TYPES = new Set<string>(['connect', 'publish', 'announce', 'query_files', 'get_nodes', 'withdraw'])

/** The tracker service: a UDP socket wired to the tracker flow. */
export class TrackerServer {
  readonly registry: Registry
  private udp: UdpPort | null = null
  private sub: Subscription | null = null
  private readonly log = log.child({ module: 'tracker' })
  /** Datagrams dropped as malformed, since start. */
  dropped = 0
  /** Datagrams dropped because their source sent too many, since start. */
  limited = 0
  private readonly limiter: SourceLimiter

  constructor (private readonly opts: TrackerServerOptions = {}) {
    this.registry = new Registry(opts.files, opts.ttlMs ?? NODE_TTL_MS)
    this.limiter = new SourceLimiter(opts.ratePerSource ?? TRACKER_RATE_PER_SOURCE, 2 * (opts.ratePerSource ?? TRACKER_RATE_PER_SOURCE))
  }

  async start (): Promise<Endpoint> {
    if (this.udp !== null) return this.udp.address()
    const udp = await bindUdp(this.opts.host ?? '127.0.0.1', this.opts.port ?? 0, (err, to) => this.log.debug({ err: err.message, to }, 'send failed'))
    this.udp = udp
    const requests$ = udp.datagrams$.pipe(
      filter((d) => {
        // a source that floods us is not answered (nor decoded) beyond its share
        if (this.limiter.allow(d.from.address, Date.now())) return true
        if (this.limited++ % 1000 === 0) this.log.warn({ from: d.from.address, limited: this.limited }, 'source over its request rate: dropping')
        return false
      }),
      mergeMap((d) => {
        try {
          const msg = decodeDatagram(d.data)
          if (!REQUEST_TYPES.has(msg.type)) throw new ProtocolError(`${msg.type} is not a request`)
          return of<Inbound>({ msg: msg as TrackerRequest, from: d.from, bytes: d.data.length })
        } catch (err) {
          this.dropped++
          this.log.warn({ from: d.from, bytes: d.data.length, err: (err as Error).message }, 'dropped malformed datagram')
          return of(null)
        }
      }),
      filter((r): r is Inbound => r !== null),
    )
    this.sub = trackerFlow(requests$, {
      registry: this.registry,
      heartbeatMs: this.opts.heartbeatMs ?? HEARTBEAT_MS,
      // tokens die with the process: after a restart clients simply connect again
      secret: randomBytes(32),
      onError: (err, r) => this.log.warn({ from: r.from, type: r.msg.type, err: err.message }, 'request failed'),
    }).pipe(map((o) => ({ data: encodeDatagram(o.msg), to: o.to })))
      .subscribe({ next: (o) => udp.send(o.data, o.to), error: (err) => this.log.error({ err }, 'tracker flow failed') })
    const addr = udp.address()
    this.log.info(addr, 'tracker listening')
    return addr
  }

  address (): Endpoint | null { return this.udp?.address() ?? null }

  /** Stop serving and close the file store. Safe to call twice. */
  close (): void {
    this.sub?.unsubscribe(); this.sub = null
    this.udp?.close(); this.udp = null
    this.opts.files?.close?.()
  }
}
