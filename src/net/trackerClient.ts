import { asyncScheduler, catchError, defer, EMPTY, filter, finalize, map, Observable, of, retry, shareReplay, switchMap, take, tap, throwError, throwIfEmpty, timeout, type SchedulerLike } from 'rxjs'
import { ConnectionClosedError, ProtocolError, RemoteError, TrackerUnreachableError } from '../errors'
import { MAX_TRACKER_FILES, MAX_TRACKER_NODES, TRACKER_ATTEMPTS, TRACKER_TIMEOUT_MS } from '../limits'
import { TokenBucket } from '../../streams/rateLimit'
import { CONNECT_PAD_BYTES, type GetNodes, type ListedFile, type QueryFiles, type NodeInfo, type Published, type TrackerMessage, type TrackerReply, type TrackerRequest } from '../protocol/messages'

/** A connection token is renewed after this long (the tracker accepts it for 2 to 4 minutes). */
export const TOKEN_REFRESH_MS = 60_000

/** How a client reaches a tracker: send a message, see every message that comes back. */
export interface TrackerTransport {
  send: (msg: TrackerRequest) => void
  incoming$: Observable<TrackerMessage>
  /** For messages and errors. */
  readonly name: string
}

export interface TrackerClientOptions {
  scheduler?: SchedulerLike
  timeoutMs?: number
  attempts?: number
  /** Transaction ids: injectable for deterministic tests. */
  nextTx?: () => number
  /**
   * Most datagrams per second this client sends (tries included; default: no limit), twice that
   * in a burst: under the tracker's per-address limit, a node publishing or withdrawing thousands
   * of files at once is paced instead of having most of them dropped and retried.
   */
  ratePerSecond?: number
}

/** Options of one request: a client's, and the pace its tries wait for. */
interface RequestOptions extends TrackerClientOptions {
  pace?: { take: (n: number) => Observable<unknown> }
}

export type WithoutTx<T> = T extends unknown ? Omit<T, 'tx'> : never
type ReplyFor<R extends TrackerRequest['type']> =
  R extends 'publish' ? Published : R extends 'announce' ? Extract<TrackerReply, { type: 'announced' }> :
    R extends 'query_files' ? Extract<TrackerReply, { type: 'files' }> : R extends 'withdraw' ? Extract<TrackerReply, { type: 'withdrawn' }> :
      R extends 'leave' ? Extract<TrackerReply, { type: 'left' }> :
      R extends 'connect' ? Extract<TrackerReply, { type: 'connected' }> : Extract<TrackerReply, { type: 'nodes' }>

/**
 * Request/reply over datagrams: each attempt sends the request with a fresh transaction id and
 * waits for the reply that echoes it (`timeoutMs`, doubling with each try); silence is retried, and
 * after `attempts` tries the request fails with TrackerUnreachableError. An `error` reply fails
 * at once with RemoteError; replies that end (the transport closed) with ConnectionClosedError. Cold: nothing is sent until subscription.
 */
export function trackerRequest<M extends WithoutTx<TrackerRequest>> (transport: TrackerTransport, msg: M, opts: RequestOptions = {}): Observable<ReplyFor<M['type']>> {
  const scheduler = opts.scheduler ?? asyncScheduler
  const timeoutMs = opts.timeoutMs ?? TRACKER_TIMEOUT_MS
  const attempts = opts.attempts ?? TRACKER_ATTEMPTS
  const nextTx = opts.nextTx ?? randomTx
  let attempt = 0
  const pace = opts.pace
  return defer(() => {
    const wait = timeoutMs * 2 ** attempt++
    const tx = nextTx()
    const out = { ...msg, tx } as TrackerRequest
    const ask = new Observable<TrackerMessage>((sub) => {
      // listen before sending so a fast reply is never missed
      // (replies that stop for good, a node closed: the request fails instead of waiting forever)
      const s = transport.incoming$.pipe(filter((m) => m.tx === tx), take(1), throwIfEmpty(() => new ConnectionClosedError(transport.name, 'closed before the tracker answered'))).subscribe(sub)
      transport.send(out)
      return s
    }).pipe(timeout({ first: wait, scheduler, with: () => throwError(() => new TrackerUnreachableError(transport.name, attempts)) }))
    // (the wait for the pace is not the tracker's: its timeout starts when the datagram goes)
    return pace === undefined ? ask : pace.take(1).pipe(take(1), switchMap(() => ask))
  }).pipe(
    retry({ count: attempts - 1, delay: (e) => { if (e instanceof TrackerUnreachableError) return of(0); throw e } }),
    map((reply) => {
      if (reply.type === 'error') throw new RemoteError(reply.code, reply.message)
      return reply as ReplyFor<M['type']>
    }),
  )
}

function randomTx (): number { return (Math.random() * 0x100000000) >>> 0 }

/**
 * The tracker, as the rest of a node sees it. Pages are followed to the end, so callers get whole
 * lists: a list that does not end where a tracker's limits say it must (MAX_TRACKER_FILES,
 * MAX_TRACKER_NODES) fails rather than being passed on cut.
 */
export class TrackerClient {
  private token: { value: Uint8Array, at: number } | null = null
  private connecting: Observable<Uint8Array> | null = null
  private readonly opts: RequestOptions

  constructor (readonly transport: TrackerTransport, opts: TrackerClientOptions = {}) {
    const rate = opts.ratePerSecond
    this.opts = rate === undefined ? opts : { ...opts, pace: new TokenBucket({ rate, burst: 2 * rate, scheduler: opts.scheduler }) }
  }

  /**
   * A request with this client's connection token (obtained with `connect` first, refreshed
   * before it expires, and once more if the tracker says it is stale, e.g. after a restart).
   */
  request<M extends WithoutTx<TrackerRequest>> (msg: M, retried = false): Observable<ReplyFor<M['type']>> {
    if (msg.type === 'connect') return trackerRequest(this.transport, msg, this.opts)
    return this.currentToken().pipe(
      switchMap((token) => trackerRequest(this.transport, { ...msg, token }, this.opts)),
      catchError((err: unknown) => {
        if (retried || !(err instanceof RemoteError) || err.remoteCode !== 'BAD_TOKEN') throw err
        this.token = null
        return this.request(msg, true)
      }),
    ) as Observable<ReplyFor<M['type']>>
  }

  /**
   * Tell the tracker this node is closing: one datagram, with the token already held (a client
   * that never connected has nothing to take back), and at most `waitMs` for the answer. Never
   * fails: if the tracker does not hear it, the node's records expire as they would after a crash.
   */
  leave (nodeId: string, port: number, waitMs: number): Observable<unknown> {
    const token = this.token?.value
    if (token === undefined) return EMPTY
    return trackerRequest(this.transport, { type: 'leave', nodeId, port, token }, { ...this.opts, attempts: 1, timeoutMs: waitMs }).pipe(catchError(() => EMPTY))
  }

  private currentToken (): Observable<Uint8Array> {
    const now = (this.opts.scheduler ?? asyncScheduler).now()
    if (this.token !== null && now - this.token.at < TOKEN_REFRESH_MS) return of(this.token.value)
    // one handshake serves every request waiting for it
    this.connecting ??= trackerRequest(this.transport, { type: 'connect', pad: new Uint8Array(CONNECT_PAD_BYTES) }, this.opts).pipe(
      map((r) => r.token),
      tap((value) => { this.token = { value, at: now } }),
      finalize(() => { this.connecting = null }),
      shareReplay({ bufferSize: 1, refCount: false }),
    )
    return this.connecting
  }

  /** Every published file. */
  files (maxItems = MAX_TRACKER_FILES): Observable<ListedFile[]> {
    return collectPages((after) => this.request<WithoutTx<QueryFiles>>(after === undefined ? { type: 'query_files' } : { type: 'query_files', after })
      .pipe(map((r) => ({ items: r.files, next: r.next }))), maxItems, 'files')
  }

  /** Up to `k` live holders of `fileId`, drawn at random by the tracker (one request). */
  sample (fileId: string, k: number): Observable<NodeInfo[]> {
    return this.request({ type: 'get_nodes', fileId, sample: k }).pipe(map((r) => r.nodes))
  }

  /** Live nodes, optionally only those holding `fileId`. */
  nodes (fileId?: string, maxItems = MAX_TRACKER_NODES): Observable<NodeInfo[]> {
    return collectPages((after) => {
      const m: WithoutTx<GetNodes> = { type: 'get_nodes' }
      if (fileId !== undefined) m.fileId = fileId
      if (after !== undefined) m.after = after
      return this.request(m).pipe(map((r) => ({ items: r.nodes, next: r.next })))
    }, maxItems, 'nodes')
  }
}

/**
 * A whole list, page after page (each after the key the last one gave). Fails when the list is
 * longer than `maxItems` (what a tracker may hold) or a page does not move on (a key not after
 * the last one, an empty page that says there is more): a list cut short is never passed on as
 * whole (a `get` would say "not found" for a file the tracker lists).
 */
function collectPages<T> (get: (after?: string) => Observable<{ items: T[], next?: string }>, maxItems: number, what: string): Observable<T[]> {
  return new Observable<T[]>((sub) => {
    const all: T[] = []
    let inner: { unsubscribe: () => void } | undefined
    const step = (after?: string): void => {
      inner = get(after).subscribe({
        next: (p) => {
          for (const it of p.items) all.push(it)
          if (p.next === undefined) { sub.next(all); sub.complete(); return }
          if (all.length > maxItems || p.items.length === 0 || (after !== undefined && p.next <= after)) {
            sub.error(new ProtocolError(`the tracker's list of ${what} did not end (${all.length} so far, more than a tracker holds, or a page that does not move on): not used cut short`))
            return
          }
          step(p.next)
        },
        error: (e) => sub.error(e),
      })
    }
    step()
    return () => inner?.unsubscribe()
  })
}
