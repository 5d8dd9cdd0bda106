import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { map, type Observable, type Subscription } from 'rxjs'
import { DASHBOARD_CLIENT_BUFFER_BYTES, DASHBOARD_IDLE_MS, DASHBOARD_REQUESTS_PER_CONNECTION, DASHBOARD_TICK_MS, MAX_DASHBOARD_CLIENTS, MAX_DASHBOARD_CONNECTIONS_PER_ADDRESS } from '../limits'
import { log } from '../log'
import { PeerConnection } from '../net/peerConnection'
import { AddressCounts, isLoopbackAddress } from '../net/address'
import type { Have, PeerAddress } from '../protocol/messages'
import { APP_CSS, APP_JS, INDEX_HTML } from './dashboard/assets'
import { probeAvailability, type Availability } from './dashboard/availability'
import { NodeRates } from './dashboard/rates'
import { buildSnapshot, probeTargets, type DashboardSnapshot, type RegistryView } from './dashboard/snapshot'
import type { Endpoint } from './flow'
import type { TrackerMetrics } from './metrics'

export interface DashboardHttpOptions {
  host?: string
  port?: number
  registry: RegistryView
  metrics: TrackerMetrics
  /** How often live clients get a snapshot (and holders are probed). */
  tickMs?: number
  maxClients?: number
  /** Probe holders for the availability heatmap (on by default; off, the heatmap says "not probed"). */
  probe?: boolean
  /** Clock for snapshots (the registry's `lastSeen` come from the same clock). */
  now?: () => number
  /** A connection idle this long is closed (DASHBOARD_IDLE_MS). */
  idleMs?: number
}

const SECURITY_HEADERS = {
  // no inline script or style, nothing from elsewhere: a hostile file name cannot run code
  'Content-Security-Policy': "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
}

// a Map, not an object: a request path is never looked up among Object.prototype's keys
const STATIC = new Map<string, { type: string, body: string }>([
  ['/', { type: 'text/html; charset=utf-8', body: INDEX_HTML }],
  ['/app.js', { type: 'text/javascript; charset=utf-8', body: APP_JS }],
  ['/app.css', { type: 'text/css; charset=utf-8', body: APP_CSS }],
])

/** The host name of a Host header (no port, no IPv6 brackets), lower case; null if it is not one. */
export function hostName (header: string): string | null {
  const h = header.trim().toLowerCase()
  if (h.startsWith('[')) { const end = h.indexOf(']'); return end > 1 && (end === h.length - 1 || h[end + 1] === ':') ? h.slice(1, end) : null }
  const colon = h.indexOf(':')
  if (colon >= 0 && h.indexOf(':', colon + 1) >= 0) return null
  const name = colon >= 0 ? h.slice(0, colon) : h
  return name === '' ? null : name
}

/** The body of the 503 a connection over its address's cap gets. */
const TOO_MANY = 'too many connections from one host\n'

/**
 * Whether a dashboard bound to `bound` answers a request that names `header` as its Host. On a
 * loopback address only loopback names are served: a web page elsewhere could otherwise point its
 * own name at 127.0.0.1 (DNS rebinding) and read the dashboard from the user's browser. Bound to
 * any other address the dashboard is reachable by that address's whole network anyway: any Host.
 * No Host header at all (HTTP/1.0 tools; every browser sends one) is served.
 */
export function hostAllowed (header: string | undefined, bound: string): boolean {
  if (!isLoopbackAddress(bound)) return true
  if (header === undefined) return true
  const name = hostName(header)
  if (name === null) return false
  return name === 'localhost' || name.endsWith('.localhost') || isLoopbackAddress(name)
}

/**
 * The tracker's read-only HTTP side: the dashboard page and its assets, `/api/state` (a JSON
 * snapshot), `/events` (Server-Sent Events: a snapshot about once a second) and `/metrics`
 * (Prometheus text). While at least one browser follows `/events`, the most held files' holders
 * are probed over TCP for the availability heatmap; with nobody watching, nothing is probed.
 */
export class DashboardHttp {
  private server: http.Server | null = null
  private readonly clients = new Set<http.ServerResponse>()
  private readonly rates = new NodeRates()
  private availability: ReadonlyMap<string, Availability> = new Map()
  private readonly conns = new Map<string, PeerConnection>()
  private timer: NodeJS.Timeout | null = null
  private probing: Subscription | null = null
  private readonly log = log.child({ module: 'dashboard' })
  private readonly now: () => number

  constructor (private readonly opts: DashboardHttpOptions) {
    this.now = opts.now ?? Date.now
  }

  async start (): Promise<Endpoint> {
    if (this.server !== null) return this.address() as Endpoint
    // (requests that never finish their headers are cut after headersTimeout, checked every second:
    // the default check every 30 s let 80 of them lock everyone out for half a minute)
    const server = http.createServer({ headersTimeout: 5_000, requestTimeout: 15_000, connectionsCheckingInterval: 1_000 }, (req, res) => this.handle(req, res))
    // live clients hold one connection each; the rest are short requests
    server.maxConnections = 2 * (this.opts.maxClients ?? MAX_DASHBOARD_CLIENTS) + 16
    server.maxRequestsPerSocket = DASHBOARD_REQUESTS_PER_CONNECTION
    const idleMs = this.opts.idleMs ?? DASHBOARD_IDLE_MS
    // a client that stops reading holds its slot only this long (the server arms each socket's
    // timeout with this at connection and again between requests, and destroys it when it fires)
    server.timeout = idleMs
    // and no one remote address takes them all (loopback is every local viewer at once: not capped)
    const perAddress = new AddressCounts(MAX_DASHBOARD_CONNECTIONS_PER_ADDRESS)
    server.on('connection', (sock: net.Socket) => {
      const from = sock.remoteAddress ?? ''
      if (!perAddress.allows(from)) {
        sock.end(`HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(TOO_MANY)}\r\n\r\n${TOO_MANY}`)
        return
      }
      perAddress.add(from)
      sock.once('close', () => perAddress.remove(from))
    })
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
    server.on('error', (err) => this.log.error({ err: err.message }, 'http server error'))
    const a = this.address() as Endpoint
    this.log.info(a, 'dashboard listening')
    return a
  }

  address (): Endpoint | null {
    const a = this.server?.address() as AddressInfo | null | undefined
    return a == null ? null : { address: a.address, port: a.port }
  }

  /** The current snapshot (availability from the last probe round). */
  snapshot (): DashboardSnapshot {
    return buildSnapshot(this.opts.registry, this.rates, this.availability, this.now())
  }

  /** The snapshot as JSON for /api/state, made at most once a tick: polled in a loop, each one (hundreds of ms with a big registry) held the UDP tracker's replies back. */
  private stateJson (): string {
    const now = this.now()
    const tick = this.opts.tickMs ?? DASHBOARD_TICK_MS
    if (this.cachedState === null || now - this.cachedState.at >= tick || now < this.cachedState.at) this.cachedState = { at: now, json: JSON.stringify(this.snapshot()) }
    return this.cachedState.json
  }

  private cachedState: { at: number, json: string } | null = null

  private handle (req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]
    const known = STATIC.has(path) || path === '/favicon.ico' || path === '/api/state' || path === '/events' || path === '/metrics'
    const route = known ? path : 'other'
    const send = (status: number, type: string, body: string, extra: Record<string, string> = {}): void => {
      this.opts.metrics.httpRequest(route, status)
      res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...extra })
      res.end(body)
    }
    const bound = this.address()?.address ?? '127.0.0.1'
    if (!hostAllowed(req.headers.host, bound)) {
      send(403, 'text/plain; charset=utf-8', `host ${JSON.stringify(req.headers.host)} is not served: this dashboard listens on loopback and answers only to loopback names (localhost, 127.0.0.1, [::1]); it refuses other names so that a web page cannot reach it through DNS rebinding\n`)
      return
    }
    if (req.method !== 'GET') { send(405, 'text/plain; charset=utf-8', 'method not allowed: this dashboard is read-only\n', { Allow: 'GET' }); return }
    // browsers ask for it unprompted: answer without a 404 in their console
    if (path === '/favicon.ico') { send(204, 'image/x-icon', ''); return }
    const asset = STATIC.get(path)
    if (asset !== undefined) { send(200, asset.type, asset.body); return }
    switch (path) {
      case '/api/state':
        send(200, 'application/json; charset=utf-8', this.stateJson())
        return
      case '/metrics':
        this.opts.metrics.text().then(
          (text) => send(200, this.opts.metrics.contentType, text),
          (err: Error) => { this.log.warn({ err: err.message }, 'metrics failed'); send(500, 'text/plain; charset=utf-8', 'metrics failed\n') },
        )
        return
      case '/events':
        this.follow(req, res)
        return
      default:
        send(404, 'text/plain; charset=utf-8', 'not found\n')
    }
  }

  /** A live client: SSE, one snapshot now and one per tick. */
  private follow (req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.clients.size >= (this.opts.maxClients ?? MAX_DASHBOARD_CLIENTS)) {
      this.opts.metrics.httpRequest('/events', 503)
      const body = 'too many live viewers: poll /api/state instead\n'
      res.writeHead(503, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Retry-After': '10' })
      res.end(body)
      return
    }
    this.opts.metrics.httpRequest('/events', 200)
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive' })
    res.write('retry: 2000\n\n')
    this.clients.add(res)
    this.opts.metrics.dashboardClients.set(this.clients.size)
    const gone = (): void => {
      if (!this.clients.delete(res)) return
      this.opts.metrics.dashboardClients.set(this.clients.size)
      if (this.clients.size === 0) this.idle()
    }
    req.on('close', gone)
    res.on('close', gone)
    res.on('error', gone)
    this.push([res], this.snapshot())
    if (this.timer === null) this.timer = setInterval(() => this.tick(), this.opts.tickMs ?? DASHBOARD_TICK_MS)
  }

  private push (to: Iterable<http.ServerResponse>, s: DashboardSnapshot): void {
    const frame = `event: state\ndata: ${JSON.stringify(s)}\n\n`
    for (const res of to) {
      // a client that does not keep up is dropped rather than buffered without bound
      if (res.writableLength > DASHBOARD_CLIENT_BUFFER_BYTES) { res.destroy(); continue }
      res.write(frame)
    }
  }

  /** Each tick: a probe round (unless one is still out), then a snapshot to every live client. */
  private tick (): void {
    if (this.clients.size === 0) return
    if (this.opts.probe === false || this.probing !== null) { this.push(this.clients, this.snapshot()); return }
    const used = new Set<string>()
    this.probing = probeAvailability(probeTargets(this.opts.registry), {
      probe: (peer, fileId) => { used.add(key(peer)); return this.probe(peer, fileId) },
      onProbe: (outcome, peer, err) => {
        this.opts.metrics.probe(outcome)
        if (err !== undefined) this.log.debug({ peer: key(peer), err: err.message }, 'availability probe failed')
      },
    }).subscribe({
      next: (a) => { this.availability = a },
      error: (err: Error) => this.log.warn({ err: err.message }, 'availability round failed'),
      complete: () => {
        this.probing = null
        // holders that left the shown clusters: their connections go
        for (const [k, c] of this.conns) if (!used.has(k)) { c.close(); this.conns.delete(k) }
        this.push(this.clients, this.snapshot())
      },
    })
  }

  private probe (peer: PeerAddress, fileId: string): Observable<Have> {
    const k = key(peer)
    let c = this.conns.get(k)
    if (c === undefined) { c = new PeerConnection(peer); this.conns.set(k, c) }
    return c.request({ type: 'probe', fileId }).pipe(map((f) => {
      if (f.msg.type !== 'have') throw new TypeError(`probe answered with ${f.msg.type}`)
      return f.msg
    }))
  }

  /** Nobody watches: stop ticking and probing, let the holders' connections go. */
  private idle (): void {
    if (this.timer !== null) { clearInterval(this.timer); this.timer = null }
    this.probing?.unsubscribe(); this.probing = null
    for (const c of this.conns.values()) c.close()
    this.conns.clear()
    this.availability = new Map()
  }

  /** Stop serving: live clients are ended, probes stop. Safe to call twice. */
  async close (): Promise<void> {
    for (const res of this.clients) res.end()
    this.clients.clear()
    this.idle()
    const s = this.server
    this.server = null
    if (s === null) return
    s.closeAllConnections()
    await new Promise<void>((resolve) => s.close(() => resolve()))
  }
}

const key = (p: PeerAddress): string => `${p.host}:${p.port}`
