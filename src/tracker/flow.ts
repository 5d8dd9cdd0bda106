import { asyncScheduler, EMPTY, ignoreElements, interval, merge, mergeMap, of, tap, type Observable, type SchedulerLike } from 'rxjs'
import { BadTokenError } from '../errors'
import { HEARTBEAT_MS, MAX_REPLY_ITEMS_BYTES, NODE_TTL_MS } from '../limits'
import { encodeValue } from '../protocol/codec'
import { ID_IN_USE, MAX_LIST_ITEMS, TOKEN_BYTES, type TrackerReply, type TrackerRequest } from '../protocol/messages'
import { makeToken, tokenValid } from './token'
import { NodeIdInUseError, type NodeRef, Registry, RegistryFullError } from './registry'

/** A UDP peer as the socket saw it. */
export interface Endpoint { address: string, port: number }
/** A request, where it came from and how big its datagram was (no unproven source gets a bigger reply). */
export interface Inbound { msg: TrackerRequest, from: Endpoint, bytes?: number }
export interface Outbound { msg: TrackerReply, to: Endpoint }

export interface TrackerFlowOptions {
  registry: Registry
  scheduler?: SchedulerLike
  heartbeatMs?: number
  /** Nodes are expired on this period (defaults to half the TTL). */
  sweepMs?: number
  /** Called for each request that failed (for logs and counters). */
  onError?: (err: Error, req: Inbound) => void
  /**
   * Key for connection tokens: with it, every request but `connect` must carry a token made for
   * its source address (spoofed sources get nothing, or an error no bigger than their datagram).
   */
  secret?: Buffer
  tokenPeriodMs?: number
}

/**
 * The tracker as a flow: requests in, replies out, time from the scheduler. No socket here:
 * the server wires it to UDP, tests drive it with marbles.
 */
export function trackerFlow (requests$: Observable<Inbound>, opts: TrackerFlowOptions): Observable<Outbound> {
  const scheduler = opts.scheduler ?? asyncScheduler
  const reg = opts.registry
  const heartbeatMs = opts.heartbeatMs ?? HEARTBEAT_MS
  const sweep$ = interval(opts.sweepMs ?? NODE_TTL_MS / 2, scheduler).pipe(tap(() => reg.expire(scheduler.now())), ignoreElements())
  const replies$ = requests$.pipe(
    mergeMap((r) => {
      const now = scheduler.now()
      if (r.msg.type === 'connect') {
        return of<Outbound>({ msg: { type: 'connected', tx: r.msg.tx, token: opts.secret === undefined ? new Uint8Array(TOKEN_BYTES) : makeToken(opts.secret, r.from, now, opts.tokenPeriodMs) }, to: r.from })
      }
      if (opts.secret !== undefined && !tokenValid(opts.secret, r.from, r.msg.token, now, opts.tokenPeriodMs)) {
        opts.onError?.(new BadTokenError(), r)
        const reply: Outbound = { msg: { type: 'error', tx: r.msg.tx, code: 'BAD_TOKEN', message: '' }, to: r.from }
        // an unproven source never gets more bytes than it sent
        return encodeValue(reply.msg).length <= (r.bytes ?? 0) ? of(reply) : EMPTY
      }
      try {
        return of<Outbound>({ msg: handle(r, reg, now, heartbeatMs), to: r.from })
      } catch (err) {
        opts.onError?.(err as Error, r)
        const code = err instanceof RegistryFullError ? 'FULL' : err instanceof NodeIdInUseError ? ID_IN_USE : 'BAD_REQUEST'
        return of<Outbound>({ msg: { type: 'error', tx: r.msg.tx, code, message: (err as Error).message.slice(0, 200) }, to: r.from })
      }
    }),
  )
  return merge(replies$, sweep$)
}

function handle (r: Inbound, reg: Registry, now: number, heartbeatMs: number): TrackerReply {
  const m = r.msg
  // the tracker trusts the source address, never an address a client claims for itself
  const node = (id: string, port: number): NodeRef => ({ nodeId: id, host: r.from.address, port, via: r.from.port })
  switch (m.type) {
    case 'publish':
      return { type: 'published', tx: m.tx, meta: reg.publish(node(m.nodeId, m.port), m, now) }
    case 'announce':
      return { type: 'announced', tx: m.tx, interval: heartbeatMs, resync: reg.announce(node(m.nodeId, m.port), m.files, now, m) }
    case 'query_files': {
      const { items, next } = page(reg.files.list(m.after, FILES_PAGE_ROWS).map((f) => ({ ...f, holders: reg.holderCount(f.hash) })), (f) => f.hash, MAX_REPLY_ITEMS_BYTES, FILES_PAGE_ROWS)
      return next === undefined ? { type: 'files', tx: m.tx, files: items } : { type: 'files', tx: m.tx, files: items, next }
    }
    case 'get_nodes': {
      if (m.sample !== undefined) {
        if (m.fileId === undefined) throw new RangeError('sample needs a fileId')
        return { type: 'nodes', tx: m.tx, nodes: page(reg.sampleNodes(m.fileId, m.sample), (n) => n.nodeId, MAX_REPLY_ITEMS_BYTES, Infinity).items }
      }
      const { items, next } = page(reg.listNodes(m.fileId, m.after, NODES_PAGE_ROWS), (n) => n.nodeId, MAX_REPLY_ITEMS_BYTES, NODES_PAGE_ROWS)
      return next === undefined ? { type: 'nodes', tx: m.tx, nodes: items } : { type: 'nodes', tx: m.tx, nodes: items, next }
    }
    case 'withdraw':
      reg.withdraw(node(m.nodeId, m.port), m.fileId, now)
      return { type: 'withdrawn', tx: m.tx }
    case 'leave':
      reg.leave(node(m.nodeId, m.port), now)
      return { type: 'left', tx: m.tx }
    case 'connect': // answered before a token is asked for
      throw new Error('unreachable')
    default: {
      const never: never = m
      throw new Error(`unhandled request ${(never as { type: string }).type}`)
    }
  }
}

/**
 * Rows read from the store for one page of `files` / `nodes`: a little more than a datagram holds
 * of the smallest (a page is cut at MAX_REPLY_ITEMS_BYTES; reading MAX_LIST_ITEMS rows to send
 * 35 to 140 of them cost the store a thousand rows a datagram).
 */
const FILES_PAGE_ROWS = 192
const NODES_PAGE_ROWS = 160

/**
 * Take items while they fit in one datagram. `next` is the key to continue after when some
 * were left out, or when the store gave all the `limit` rows asked of it (it may hold more).
 */
export function page<T> (all: T[], key: (t: T) => string, budget = MAX_REPLY_ITEMS_BYTES, limit = MAX_LIST_ITEMS): { items: T[], next?: string } {
  const items: T[] = []
  let used = 0
  for (const it of all) {
    used += encodeValue(it).length
    if (used > budget) break
    items.push(it)
  }
  const more = items.length < all.length || all.length === limit
  return more && items.length > 0 ? { items, next: key(items[items.length - 1]) } : { items }
}
