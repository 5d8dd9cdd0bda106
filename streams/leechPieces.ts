import { defaultIfEmpty, defer, EMPTY, expand, filter, from, map, of, type Observable } from 'rxjs'

export interface LeechLoopOptions<P> {
  /** The next piece offset to ask this source for, or null when it has nothing (more) to give. */
  next: () => number | null
  /** Fetch (and store) one piece; emits once when it is done, completes empty when it was cancelled, errors when it fails. */
  fetch: (offset: number) => Observable<P>
  /** Requests in flight at once. */
  pipeline: number
}

type Step<P> = { want: number } | { got: P } | { skipped: number }

/**
 * The leech loop of one source: an `expand` over PieceHeader offsets. It starts `pipeline`
 * requests; each piece that arrives asks `next()` for one more offset, so at most `pipeline`
 * requests are ever in flight and nothing queues without bound. It completes when `next()` has
 * nothing left and every request has landed; a failed fetch errors the loop (the caller decides
 * what becomes of that source and its unfinished offsets).
 */
export function leechPieces<P> (opts: LeechLoopOptions<P>): Observable<P> {
  return defer(() => {
    const first: Step<P>[] = []
    for (let i = 0; i < opts.pipeline; i++) {
      const o = opts.next()
      if (o === null) break
      first.push({ want: o })
    }
    return from(first).pipe(
      expand((step: Step<P>): Observable<Step<P>> => {
        // a fetch that ends without a piece (cancelled: another source delivered it first) still
        // frees its slot for the next offset
        if ('want' in step) return opts.fetch(step.want).pipe(map((got): Step<P> => ({ got })), defaultIfEmpty<Step<P>, Step<P>>({ skipped: step.want }))
        const o = opts.next()
        return o === null ? EMPTY : of({ want: o })
      // a strict bound: a landed piece is passed on (and the next offset asked for) when its
      // fetch completes and frees its slot, so `pipeline` fetches are never exceeded
      }, opts.pipeline),
      filter((s): s is { got: P } => 'got' in s),
      map((s) => s.got),
    )
  })
}
