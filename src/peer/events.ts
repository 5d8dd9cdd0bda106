import { asyncScheduler, concatMap, defer, EMPTY, Observable, of, type OperatorFunction, type SchedulerLike } from 'rxjs'
import type { LeechEvent } from './leech'

/** Default: at most this many progress events per second. */
export const PROGRESS_PER_SECOND = 4

/**
 * What a download tells its caller: the events `lp2p get --json` prints, one discriminated union
 * on `event`. Failures are not events: they end the Observable with an error (the CLI prints it
 * as `{ event: 'error', code, message }`, see `DownloadErrorEvent`).
 */
export type DownloadEvent =
  /** The file was found; `present` pieces were already on disk (a resumed download). */
  | { event: 'start', fileId: string, name: string, size: number, blockSize: number, pieces: number, present: number }
  /** A discovery round whose counts changed: neighbours asked, cluster members probed, sources that hold something we lack. */
  | { event: 'peers', neighbours: number, cluster: number, sources: number }
  /** Bytes held (resumed ones included), `rate` in bytes/s fetched in this run, `peers` live sources. */
  | { event: 'progress', bytes: number, size: number, percent: number, rate: number, peers: number }
  | { event: 'piece-failed', index: number, peer: string, reason: string }
  | { event: 'peer-dropped', peer: string, code: string, error: string }
  /** `pieces` stored pieces failed the final check (changed on disk since they were verified) and are fetched again; a new `start` follows. */
  | { event: 'refetch', pieces: number, reason: string }
  /** Verified and renamed: `path` is the final file, `downloaded` the bytes fetched in this run. */
  | { event: 'done', fileId: string, name: string, path: string, bytes: number, sha256: string, downloaded: number }

/** How the CLI prints a download's error (not part of the stream: the stream errors instead). */
export interface DownloadErrorEvent { event: 'error', code: string, message: string }

export interface DownloadEventsOptions {
  /** Least time between two progress events (default 1000 / PROGRESS_PER_SECOND). */
  progressIntervalMs?: number
  scheduler?: SchedulerLike
}

/**
 * The internal leech events → the public ones: `hashes` and per-piece events are folded into
 * `progress` (throttled, time from the scheduler), with one last `progress` right before `done`
 * so a caller always sees 100%; a `peers` round is passed on only when its counts changed.
 * Errors and unsubscription pass straight through.
 */
export function downloadEvents (opts: DownloadEventsOptions = {}): OperatorFunction<LeechEvent, DownloadEvent> {
  const every = opts.progressIntervalMs ?? 1000 / PROGRESS_PER_SECOND
  const scheduler = opts.scheduler ?? asyncScheduler
  return (source) => defer(() => {
    // per subscription: a resubscribed download starts its counts afresh
    let size = 0
    let have = 0
    let fetched = 0
    let sources = 0
    // the last peers event shown (rounds repeat every few hundred ms: an unchanged one is not news)
    let lastPeers = ''
    let t0 = scheduler.now()
    let shown = t0
    const progress = (now: number): DownloadEvent => {
      const secs = (now - t0) / 1000
      const pct = size === 0 ? 100 : (100 * have) / size
      return { event: 'progress', bytes: have, size, percent: Math.round(pct * 10) / 10, rate: secs > 0 ? Math.round(fetched / secs) : 0, peers: sources }
    }
    return source.pipe(concatMap((e): Observable<DownloadEvent> => {
      switch (e.event) {
        case 'start':
          size = e.size
          // the last piece may be short: never report more than the file
          have = Math.min(e.size, e.present * e.blockSize)
          // (a start after a refetch: the rate counts from it too)
          fetched = 0
          t0 = shown = scheduler.now()
          return of({ ...e })
        case 'peers': {
          sources = e.sources
          const key = `${e.neighbours}/${e.cluster}/${e.sources}`
          if (key === lastPeers) return EMPTY
          lastPeers = key
          return of({ ...e })
        }
        case 'peer-dropped':
          sources = Math.max(0, sources - 1)
          lastPeers = '' // (the next round's count is news again, even if it equals the one before the drop)
          return of({ ...e })
        case 'piece-failed':
        case 'refetch':
          return of({ ...e })
        case 'hashes':
          return EMPTY
        case 'piece': {
          have = Math.min(size, have + e.bytes)
          fetched += e.bytes
          const now = scheduler.now()
          if (now - shown < every) return EMPTY
          shown = now
          return of(progress(now))
        }
        case 'done':
          have = size
          return of(progress(scheduler.now()), { ...e })
        default: {
          const never: never = e
          throw new TypeError(`unknown leech event ${(never as { event: string }).event}`)
        }
      }
    }))
  })
}
