import { randomBytes } from 'node:crypto'
import { filter, map, mergeMap, of, type Subscription } from 'rxjs'
import { BadTokenError, ProtocolError } from '../errors'
import { HEARTBEAT_MS, NODE_TTL_MS, TRACKER_RATE_PER_SOURCE } from '../limits'
import { SourceLimiter } from './sourceLimiter'
import { log } from '../log'
import { decodeDatagram, encodeDatagram } from '../protocol/codec'
import type { TrackerRequest } from '../protocol/messages'
import { bindUdp, type UdpPort } from '../net/udp'
import { trackerFlow, type Endpoint, type Inbound } from './flow'
import { Registry, RegistryFullError, type FileStore } from './registry'

export interface TrackerServerOptions {
  host?: string
  port?: number
  files?: FileStore
  ttlMs?: number
  /** How long a file's entry stands against contradicting claims once unheld (default UNHELD_ENTRY_STANDS_MS). */
  entryStandsMs?: number
  heartbeatMs?: number
  /** Datagrams per second handled from one source address (twice that in a burst). */
  ratePerSource?: number
  /** Told of every request, reply and failure (metrics); the flow itself stays pure. */
  observer?: TrackerObserver
}

/** Why the tracker dropped or refused a datagram. */
export type TrackerErrorKind = 'malformed' | 'rate_limited' | 'bad_token' | 'full' | 'refused'

/** Counts what the tracker server sees; every method is optional. */
export interface TrackerObserver {
  request?: (type: TrackerRequest['type']) => void
  reply?: (type: string) => void
  error?: (kind: TrackerErrorKind) => void
}

/** A failed request's kind, for counters. */
export function errorKind (err: Error): TrackerErrorKind {
  if (err instanceof BadTokenError) return 'bad_token'
  if (err instanceof RegistryFullError) return 'full'
  return 'refused'
}

const REQUEST_TYPES = new Set<string>(['connect', 'publish', 'announce', 'query_files', 'get_nodes', 'withdraw', 'leave'])

/** Warnings about bad datagrams and refused requests, per kind, at most this many a second (a flood would flood the log). */
export const WARNINGS_PER_SECOND = 5

/**
 * At most `perSecond` lines of each kind a second; the first line after some were held back says
 * how many (`suppressed`). Time is passed in.
 */
export class LogThrottle {
  private readonly kinds = new Map<string, { second: number, count: number, suppressed: number }>()
  constructor (private readonly perSecond = WARNINGS_PER_SECOND) {}

  /** Log this line? With how many of its kind were held back since the last one logged. */
  take (kind: string, now: number): { suppressed: number } | null {
    const second = Math.floor(now / 1000)
    let k = this.kinds.get(kind)
    if (k === undefined) { k = { second, count: 0, suppressed: 0 }; this.kinds.set(kind, k) }
    if (k.second !== second) { k.second = second; k.count = 0 }
    if (k.count >= this.perSecond) { k.suppressed++; return null }
    k.count++
    const suppressed = k.suppressed
    k.suppressed = 0
    return { suppressed }
  }
}

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
  /** Warnings about bad datagrams and refused requests, bounded (see LogThrottle). */
  private readonly throttle = new LogThrottle()
  /** Told of requests, replies and failures (set it before `start`, or any time after). */
  observer: TrackerObserver | undefined

  constructor (private readonly opts: TrackerServerOptions = {}) {
    this.registry = new Registry(opts.files, opts.ttlMs ?? NODE_TTL_MS, Math.random, undefined, Date.now(), opts.entryStandsMs) // (the flow's clock: asyncScheduler's)
    this.observer = opts.observer
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
        this.observer?.error?.('rate_limited')
        if (this.limited++ % 1000 === 0) this.log.warn({ from: d.from.address, limited: this.limited }, 'source over its request rate: dropping')
        return false
      }),
      mergeMap((d) => {
        try {
          const msg = decodeDatagram(d.data)
          if (!REQUEST_TYPES.has(msg.type)) throw new ProtocolError(`${msg.type} is not a request`)
          this.observer?.request?.(msg.type as TrackerRequest['type'])
          return of<Inbound>({ msg: msg as TrackerRequest, from: d.from, bytes: d.data.length })
        } catch (err) {
          this.dropped++
          this.observer?.error?.('malformed')
          const t = this.throttle.take('malformed', Date.now())
          if (t !== null) this.log.warn({ from: d.from, bytes: d.data.length, err: (err as Error).message, ...(t.suppressed > 0 ? { suppressed: t.suppressed } : {}) }, 'dropped malformed datagram')
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
      onError: (err, r) => {
        const kind = errorKind(err)
        this.observer?.error?.(kind)
        const t = this.throttle.take(kind, Date.now())
        if (t !== null) this.log.warn({ from: r.from, type: r.msg.type, err: err.message, ...(t.suppressed > 0 ? { suppressed: t.suppressed } : {}) }, 'request failed')
      },
    }).pipe(map((o) => { this.observer?.reply?.(o.msg.type); return { data: encodeDatagram(o.msg), to: o.to } }))
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
