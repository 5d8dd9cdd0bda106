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

type Step<P> = { want: number } | { got: P } | { idle: true }

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
    // (each step's inner stream is one subscriber: a swarm runs this loop for every source, and
    // wrapping each fetch and each rest in operators was a large part of a big simulation's garbage)
    return from(topUp()).pipe(
      expand((step: Step<P>): Observable<Step<P>> => {
        if ('want' in step) return fetched(opts.fetch(step.want))
        if ('idle' in step) return rested((opts.idle as () => Observable<unknown>)())
        // a landed piece frees its place: top the flight up
        inFlight--
        return from(topUp())
      // a strict bound: a landed piece is passed on (and the flight topped up) when its fetch
      // completes and frees its slot, so `pipeline` fetches are never exceeded (a wait takes a
      // slot only while none is in flight)
      }, opts.pipeline),
      filter((s): s is { got: P } => 'got' in s),
      map((s) => s.got),
    )

    // a fetch's piece, as a step; a fetch that ends without one (cancelled: another source
    // delivered it first, or declined) frees its place at once, and the flight is topped up
    function fetched (source: Observable<P>): Observable<Step<P>> {
      return new Observable<Step<P>>((sub) => {
        let seen = false
        return source.subscribe({
          next: (v) => { seen = true; sub.next({ got: v }) },
          error: (err: unknown) => sub.error(err),
          complete: () => {
            if (!seen) {
              inFlight--
              for (const s of topUp()) sub.next(s)
            }
            sub.complete()
          },
        })
      })
    }

    // a rest: its first value asks `next()` again (and ends it); ending empty ends the loop
    function rested (source: Observable<unknown>): Observable<Step<P>> {
      return new Observable<Step<P>>((sub) => {
        let seen = false
        return source.subscribe({
          next: () => {
            if (seen) return
            seen = true
            for (const s of topUp()) sub.next(s)
            sub.complete()
          },
          error: (err: unknown) => sub.error(err),
          complete: () => sub.complete(),
        })
      })
    }
  })
}
