import { defer, expand, filter, from, map, Observable } from 'rxjs'

export interface LeechLoopOptions<P> {
  /** The next piece offset to ask this source for, or null when it has nothing (more) to give. */
  next: () => number | null
  /** Fetch (and store) one piece; emits once when it is done, completes empty when it was cancelled, errors when it fails. */
  fetch: (offset: number) => Observable<P>
  /** Most requests in flight at once. */
  pipeline: number
  /**
   * How many requests to keep in flight now (1..pipeline), asked each time a piece lands: a
   * source that serves slowly gets a short queue, so picks are made late, with fresh knowledge.
   * Default: always `pipeline`.
   */
  window?: () => number
  /**
   * What to wait for when nothing is in flight and `next()` has nothing to give: its first value
   * asks `next()` again, its completing empty ends the loop. Default: the loop ends at once.
   */
  idle?: () => Observable<unknown>
}

type Step<P> = { want: number } | { got: P } | { skipped: number } | { idle: true } | { again: true }

/**
 * The leech loop of one source: an `expand` over PieceHeader offsets. It starts up to `window()`
 * requests; each piece that lands tops the flight up to the current window again (one more,
 * none, or several), never past `pipeline`, so nothing queues without bound. When nothing is in
 * flight and `next()` has nothing left, it waits on `idle()` and then asks again (the same loop:
 * a source that goes idle and back many times is not rebuilt each time), or completes when
 * there is no `idle` or it ends empty. A failed fetch errors the loop (the caller decides what
 * becomes of that source and its unfinished offsets).
 */
export function leechPieces<P> (opts: LeechLoopOptions<P>): Observable<P> {
  return defer(() => {
    let inFlight = 0
    const topUp = (): Step<P>[] => {
      const target = Math.max(1, Math.min(opts.pipeline, opts.window?.() ?? opts.pipeline))
      const wants: Step<P>[] = []
      while (inFlight < target) {
        const o = opts.next()
        if (o === null) break
        inFlight++
        wants.push({ want: o })
      }
      if (inFlight === 0 && opts.idle !== undefined) wants.push({ idle: true })
      return wants
    }
    return from(topUp()).pipe(
      expand((step: Step<P>): Observable<Step<P>> => {
        // a fetch that ends without a piece (cancelled: another source delivered it first) still
        // frees its place for the next offset
        if ('want' in step) return mapOr<P, Step<P>>(opts.fetch(step.want), (got) => ({ got }), { skipped: step.want }, false)
        if ('idle' in step) return mapOr<unknown, Step<P>>((opts.idle as () => Observable<unknown>)(), () => ({ again: true }), null, true)
        if ('got' in step || 'skipped' in step) inFlight--
        return from(topUp())
      // a strict bound: a landed piece is passed on (and the flight topped up) when its fetch
      // completes and frees its slot, so `pipeline` fetches are never exceeded (a wait takes a
      // slot only while none is in flight)
      }, opts.pipeline),
      filter((s): s is { got: P } => 'got' in s),
      map((s) => s.got),
    )
  })
}

/**
 * Each value of `source` as `as(value)`, or `empty` (unless null) if it completes without one;
 * with `once`, only its first value, and it ends there. What `map(as), defaultIfEmpty(empty)` (and
 * `take(1)` first) say, in one subscriber: the loop makes one per request and one per rest.
 */
function mapOr<T, S> (source: Observable<T>, as: (v: T) => S, empty: S | null, once: boolean): Observable<S> {
  return new Observable<S>((sub) => {
    let seen = false
    return source.subscribe({
      next: (v) => {
        if (seen && once) return
        seen = true
        sub.next(as(v))
        if (once) sub.complete()
      },
      error: (err: unknown) => sub.error(err),
      complete: () => {
        if (!seen && empty !== null) sub.next(empty)
        sub.complete()
      },
    })
  })
}
