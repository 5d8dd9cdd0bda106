import { Observable, type SchedulerLike } from 'rxjs'

/**
 * The first value of `source`, or `undefined` once `ms` have passed without one; then complete
 * (whichever comes first ends the other). What `merge(source, timer(ms)).pipe(take(1))` says, in
 * one subscriber and one scheduled action instead of four operators: a flow waits like this
 * for every idle source and every held watch, thousands of times over in a simulated swarm, where
 * the operators' subscribers were a large part of the live heap.
 */
export function firstOrAfter<T> (source: Observable<T>, ms: number, scheduler: SchedulerLike): Observable<T | undefined> {
  return new Observable<T | undefined>((sub) => {
    let over = false
    const end = (v: T | undefined): void => {
      if (over) return
      over = true
      sub.next(v)
      sub.complete()
    }
    const inner = source.subscribe({ next: (v) => end(v), error: (e: unknown) => { if (!over) { over = true; sub.error(e) } } })
    if (over) { inner.unsubscribe(); return }
    // (a source that completes without a value leaves the timer to end the wait)
    const timer = scheduler.schedule(() => end(undefined), ms)
    return () => { inner.unsubscribe(); timer.unsubscribe() }
  })
}
