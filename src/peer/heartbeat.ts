import { asyncScheduler, from, last, mergeMap, type Observable, repeat, type SchedulerLike, switchMap, tap, timer } from 'rxjs'
import { retryBackoff } from '../../streams/retryBackoff'
import { HEARTBEAT_BACKOFF_MAX_MS } from '../limits'

export interface HeartbeatDeps {
  /** The `announce` request with the node's current counters; resolves to whether the tracker lost us. */
  announce: () => Observable<{ resync: boolean }>
  /** Everything to publish again after the tracker lost us (it restarted, or expired us). */
  republish: () => Observable<unknown>[]
  /** What to do on a regular beat (refresh cluster rows, publish partial downloads). */
  regular: () => Observable<unknown>[]
  periodMs: number
  scheduler?: SchedulerLike
  random?: () => number
  onError?: (err: Error) => void
}

/**
 * A node's heartbeat loop: every period, announce; then either publish everything again (the
 * tracker lost us) or do the regular chores. While the tracker is unreachable, the waits double
 * (with jitter, up to HEARTBEAT_BACKOFF_MAX_MS) so a restarted tracker is found again soon, without
 * every node knocking at the same instant. Never completes; unsubscribe to stop.
 */
export function heartbeats (d: HeartbeatDeps): Observable<unknown> {
  const scheduler = d.scheduler ?? asyncScheduler
  const all = (os: Observable<unknown>[]): Observable<unknown> => from(os).pipe(mergeMap((o) => o), last(undefined, null))
  return timer(d.periodMs, scheduler).pipe(
    switchMap(() => d.announce()),
    mergeMap((r) => all(r.resync ? d.republish() : d.regular())),
    tap({ error: (err: Error) => d.onError?.(err) }),
    retryBackoff({ retries: Infinity, initialMs: d.periodMs, maxMs: Math.max(d.periodMs, HEARTBEAT_BACKOFF_MAX_MS), jitter: 0.5, random: d.random, scheduler }),
    repeat(),
  )
}
