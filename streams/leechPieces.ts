import { defaultIfEmpty, defer, expand, filter, from, map, type Observable } from 'rxjs'

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
}

type Step<P> = { want: number } | { got: P } | { skipped: number }

/**
 * The leech loop of one source: an `expand` over PieceHeader offsets. It starts up to `window()`
 * requests; each piece that lands tops the flight up to the current window again (one more,
 * none, or several), never past `pipeline`, so nothing queues without bound. It completes when
 * `next()` has nothing left and every request has landed; a failed fetch errors the loop (the
 * caller decides what becomes of that source and its unfinished offsets).
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
      return wants
    }
    return from(topUp()).pipe(
      expand((step: Step<P>): Observable<Step<P>> => {
        // a fetch that ends without a piece (cancelled: another source delivered it first) still
        // frees its place for the next offset
        if ('want' in step) return opts.fetch(step.want).pipe(map((got): Step<P> => ({ got })), defaultIfEmpty<Step<P>, Step<P>>({ skipped: step.want }))
        inFlight--
        return from(topUp())
      // a strict bound: a landed piece is passed on (and the flight topped up) when its fetch
      // completes and frees its slot, so `pipeline` fetches are never exceeded
      }, opts.pipeline),
      filter((s): s is { got: P } => 'got' in s),
      map((s) => s.got),
    )
  })
}
