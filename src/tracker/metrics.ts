import { collectDefaultMetrics, Counter, Gauge, Registry as PromRegistry } from 'prom-client'
import type { Registry } from './registry'
import type { TrackerErrorKind, TrackerObserver } from './server'

const REQUEST_TYPES = ['connect', 'publish', 'announce', 'query_files', 'get_nodes', 'withdraw', 'leave'] as const
const ERROR_KINDS: TrackerErrorKind[] = ['malformed', 'rate_limited', 'bad_token', 'full', 'refused']

export interface TrackerMetricsOptions {
  /** Also export the process metrics of prom-client (CPU, memory, event loop lag, GC): the CLI turns them on, tests leave them off. */
  processMetrics?: boolean
}

/**
 * The tracker's Prometheus metrics, in a registry of their own (never prom-client's global one,
 * so two trackers in one process do not clash). Counters are fed by the server as an observer;
 * gauges read the registry when scraped, so nothing is kept twice.
 */
export class TrackerMetrics implements TrackerObserver {
  readonly prom = new PromRegistry()
  private readonly requests = new Counter({ name: 'lp2p_tracker_requests_total', help: 'Tracker requests decoded, by type', labelNames: ['type'], registers: [this.prom] })
  private readonly replies = new Counter({ name: 'lp2p_tracker_replies_total', help: 'Tracker replies sent, by type (error replies included)', labelNames: ['type'], registers: [this.prom] })
  private readonly errors = new Counter({ name: 'lp2p_tracker_errors_total', help: 'Datagrams dropped or requests refused, by kind: malformed, rate_limited, bad_token, full, refused', labelNames: ['kind'], registers: [this.prom] })
  private readonly http = new Counter({ name: 'lp2p_http_requests_total', help: 'Dashboard HTTP requests, by route and status', labelNames: ['route', 'status'], registers: [this.prom] })
  private readonly probes = new Counter({ name: 'lp2p_dashboard_probes_total', help: 'Availability probes the dashboard sent to holders, by outcome', labelNames: ['outcome'], registers: [this.prom] })
  readonly dashboardClients = new Gauge({ name: 'lp2p_dashboard_clients', help: 'Browsers following the live dashboard', registers: [this.prom] })

  constructor (registry: Registry, opts: TrackerMetricsOptions = {}) {
    new Gauge({ name: 'lp2p_tracker_nodes', help: 'Live nodes (heartbeating within the TTL)', registers: [this.prom], collect () { this.set(registry.nodeCount) } })
    new Gauge({ name: 'lp2p_tracker_files', help: 'Files the tracker knows', registers: [this.prom], collect () { this.set(registry.files.size) } })
    new Gauge({
      name: 'lp2p_tracker_node_bytes',
      help: 'Bytes of pieces the live nodes report having moved (sum of their last heartbeat counters), by direction',
      labelNames: ['direction'],
      registers: [this.prom],
      collect () {
        const t = registry.counterTotals()
        this.set({ direction: 'uploaded' }, t.uploaded)
        this.set({ direction: 'downloaded' }, t.downloaded)
      },
    })
    // every label value shows from the start, at 0, so rates work from the first scrape
    for (const t of REQUEST_TYPES) this.requests.inc({ type: t }, 0)
    for (const k of ERROR_KINDS) this.errors.inc({ kind: k }, 0)
    for (const o of ['ok', 'timeout', 'error']) this.probes.inc({ outcome: o }, 0)
    if (opts.processMetrics === true) collectDefaultMetrics({ register: this.prom, prefix: 'lp2p_' })
  }

  request (type: string): void { this.requests.inc({ type }) }
  reply (type: string): void { this.replies.inc({ type }) }
  error (kind: TrackerErrorKind): void { this.errors.inc({ kind }) }
  httpRequest (route: string, status: number): void { this.http.inc({ route, status: String(status) }) }
  probe (outcome: 'ok' | 'timeout' | 'error'): void { this.probes.inc({ outcome }) }

  /** The Prometheus text exposition. */
  text (): Promise<string> { return this.prom.metrics() }
  get contentType (): string { return this.prom.contentType }
}
