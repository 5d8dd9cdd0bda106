import { Subscription, type SchedulerAction, type SchedulerLike } from 'rxjs'

/**
 * A discrete-event scheduler for simulations: virtual time in milliseconds, actions run in
 * (time, order of scheduling) order, so a run is a pure function of its inputs. It is an rxjs
 * `SchedulerLike`, so the production flows (timeouts, timers, retries) run on it unchanged.
 *
 * rxjs's own VirtualTimeScheduler keeps its queue as a sorted array (every schedule re-sorts);
 * with thousands of nodes each holding a few timers that is quadratic. This one keeps a binary
 * heap: O(log n) per schedule, and a rescheduled or cancelled action leaves a stale entry that is
 * skipped when it comes up (lazy deletion).
 */
export class SimScheduler implements SchedulerLike {
  private time = 0
  private seq = 0
  private readonly heap: Entry[] = []
  private stopped = false
  /** Actions run so far (a measure of simulation work). */
  executed = 0

  now (): number { return this.time }

  schedule<T> (work: (this: SchedulerAction<T>, state: T) => void, delay = 0, state?: T): Subscription {
    return new SimAction<T>(this, work).schedule(state, delay)
  }

  /** @internal queue `action` at now + delay; returns the generation that identifies this queueing. */
  enqueue (action: SimAction<any>, delay: number): void {
    const e: Entry = { time: this.time + Math.max(0, Number.isFinite(delay) ? delay : 0), seq: this.seq++, action, gen: ++action.gen }
    const h = this.heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(e, h[p])) break
      h[i] = h[p]; i = p
    }
    h[i] = e
  }

  private pop (): Entry | undefined {
    const h = this.heap
    const top = h[0]
    const last = h.pop()
    if (h.length > 0 && last !== undefined) {
      let i = 0
      const n = h.length
      for (;;) {
        const l = 2 * i + 1
        if (l >= n) break
        const r = l + 1
        const c = r < n && before(h[r], h[l]) ? r : l
        if (!before(h[c], last)) break
        h[i] = h[c]; i = c
      }
      h[i] = last
    }
    return top
  }

  /** Pending entries (stale ones included). */
  get queued (): number { return this.heap.length }

  /**
   * Run actions in time order until none is left, `stop()` is called, virtual time would pass
   * `untilMs`, or `maxActions` ran. Returns the virtual time reached.
   */
  run (untilMs = Infinity, maxActions = Infinity): number {
    this.stopped = false
    let n = 0
    while (!this.stopped && this.heap.length > 0 && n < maxActions) {
      const e = this.heap[0]
      if (e.time > untilMs) { this.time = untilMs; break }
      this.pop()
      if (e.gen !== e.action.gen || e.action.closed) continue
      this.time = e.time
      n++
      this.executed++
      e.action.execute()
    }
    return this.time
  }

  /** End `run()` after the current action. */
  stop (): void { this.stopped = true }
}

interface Entry { time: number, seq: number, action: SimAction<any>, gen: number }

const before = (a: Entry, b: Entry): boolean => a.time < b.time || (a.time === b.time && a.seq < b.seq)

class SimAction<T> extends Subscription implements SchedulerAction<T> {
  gen = 0
  private state: T | undefined

  constructor (private readonly scheduler: SimScheduler, private readonly work: (this: SchedulerAction<T>, state: T) => void) { super() }

  schedule (state?: T, delay = 0): Subscription {
    if (this.closed) return this
    this.state = state
    this.scheduler.enqueue(this, delay)
    return this
  }

  execute (): void {
    const gen = this.gen
    this.work.call(this, this.state as T)
    // a one-shot action that did not reschedule itself is finished
    if (gen === this.gen && !this.closed) this.unsubscribe()
  }
}
