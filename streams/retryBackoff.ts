import { asyncScheduler, retry, timer, type MonoTypeOperatorFunction, type SchedulerLike } from 'rxjs'

export interface BackoffOptions {
  /** Retries after the first attempt (Infinity: keep trying). */
  retries: number
  /** Wait before the first retry. */
  initialMs: number
  /** Waits double up to this. */
  maxMs: number
  /** 0..1: each wait is drawn from [wait·(1-jitter), wait]. Spreads reconnect storms. */
  jitter?: number
  /** Random source in [0, 1): injectable so tests are deterministic. */
  random?: () => number
  /** Only errors that pass this are retried; others go through at once. */
  shouldRetry?: (err: unknown) => boolean
  scheduler?: SchedulerLike
}

/** The wait before retry number `attempt` (1-based): exponential, capped, with jitter. */
export function backoffDelay (attempt: number, o: BackoffOptions): number {
  const base = Math.min(o.maxMs, o.initialMs * 2 ** (attempt - 1))
  const jitter = o.jitter ?? 0
  return Math.round(base * (1 - jitter * (o.random ?? Math.random)()))
}

/**
 * Resubscribe to the source after an error, waiting longer each time (exponential backoff with
 * jitter, bounded). A successful emission resets the count, so a long-lived connection that
 * drops after hours starts again from the short wait.
 */
export function retryBackoff<T> (o: BackoffOptions): MonoTypeOperatorFunction<T> {
  return retry({
    count: o.retries,
    resetOnSuccess: true,
    delay: (err, attempt) => {
      if (o.shouldRetry !== undefined && !o.shouldRetry(err)) throw err
      return timer(backoffDelay(attempt, o), o.scheduler ?? asyncScheduler)
    },
  })
}
