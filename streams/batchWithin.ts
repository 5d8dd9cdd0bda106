import { asyncScheduler, Observable, type SchedulerLike, type Subscription } from 'rxjs'

/**
 * Collects the source's values and emits them together: when the source completes, or `waitMs`
 * after the first value of a batch, whichever comes first (the values after that form the next
 * batch). What comes close together is acted on together, and a straggler (a peer that never
 * answers) holds back no one for longer than `waitMs`.
 */
export function batchWithin<T> (waitMs: number, scheduler: SchedulerLike = asyncScheduler) {
  return (source: Observable<T>): Observable<T[]> => new Observable<T[]>((sub) => {
    let batch: T[] = []
    let timer: Subscription | null = null
    const flush = (): void => {
      timer?.unsubscribe()
      timer = null
      if (batch.length === 0) return
      const b = batch
      batch = []
      sub.next(b)
    }
    const s = source.subscribe({
      next: (v) => {
        batch.push(v)
        timer ??= scheduler.schedule(flush, waitMs)
      },
      error: (err: unknown) => { timer?.unsubscribe(); sub.error(err) },
      complete: () => { flush(); sub.complete() },
    })
    return () => { s.unsubscribe(); timer?.unsubscribe() }
  })
}
