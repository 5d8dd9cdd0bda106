import { asyncScheduler, catchError, from, map, mergeMap, of, take, throwError, throwIfEmpty, timeout, type Observable, type SchedulerLike } from 'rxjs'

/** What one target of a fan-out gave: its answer, or the error that made us move on. */
export type FanOutResult<T, R> = { target: T, value: R } | { target: T, error: Error }

export interface FanOutOptions<T> {
  /** Each target must answer within this long (virtual time under a TestScheduler). */
  timeoutMs: number
  /** Targets queried at once. */
  concurrency: number
  scheduler?: SchedulerLike
  /** Builds the error for a silent target. */
  onTimeout?: (target: T) => Error
}

/**
 * Ask every target (a `merge` of per-target streams, `concurrency` at a time; targets may come as a
 * stream, each asked as it comes), each with its own
 * timeout. A target that errors, completes without answering or stays silent becomes an
 * `{ target, error }` value — "doesn't matter, move on" — and never ends the fan-out for the
 * others. Each target's first answer is taken; the stream completes when every target has
 * answered or failed.
 */
export function fanOutQuery<T, R> (targets: Iterable<T> | Observable<T>, query: (target: T) => Observable<R>, opts: FanOutOptions<T>): Observable<FanOutResult<T, R>> {
  const scheduler = opts.scheduler ?? asyncScheduler
  return from(targets).pipe(
    mergeMap((target) => query(target).pipe(
      take(1),
      throwIfEmpty(() => new Error('closed without answering')),
      timeout({ first: opts.timeoutMs, scheduler, with: () => throwError(() => opts.onTimeout?.(target) ?? new Error(`no answer in ${opts.timeoutMs} ms`)) }),
      map((value): FanOutResult<T, R> => ({ target, value })),
      catchError((error: unknown) => of<FanOutResult<T, R>>({ target, error: error instanceof Error ? error : new Error(String(error)) })),
    ), opts.concurrency),
  )
}

/** Type guard for the answers of a fan-out. */
export function isAnswer<T, R> (r: FanOutResult<T, R>): r is { target: T, value: R } {
  return !('error' in r)
}
