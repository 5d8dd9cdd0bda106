import { Subscription, type SchedulerAction, type SchedulerLike } from 'rxjs'

/**
 * A discrete-event scheduler for simulations: virtual time in milliseconds, actions run in
 * (time, order of scheduling) order, so a run is a pure function of its inputs. It is an rxjs
 * `SchedulerLike`, so the production flows (timeouts, timers, retries) run on it unchanged.
 *
 * rxjs's own VirtualTimeScheduler keeps its queue as a sorted array (every schedule re-sorts);
 * with thousands of nodes each holding a few timers that is quadratic. This one keeps a heap of
 * live actions: O(log n) to schedule, reschedule or cancel. A cancelled timer (a timeout whose
 * reply came) leaves the heap at once, so it holds no memory until its time would come. The heap
 * is 4-ary: half the levels of a binary one, a node's children side by side.
 */
export class SimScheduler implements SchedulerLike {
  private time = 0
  private seq = 0
  private readonly heap: Queued[] = []
  private stopped = false
  /** Actions run so far (a measure of simulation work). */
  executed = 0

  now (): number { return this.time }

  schedule<T> (work: (this: SchedulerAction<T>, state: T) => void, delay = 0, state?: T): Subscription {
    return new SimAction<T>(this, work).schedule(state, delay)
  }

  /**
   * `f` after `delay`, without the weight of an rxjs action (the simulated network queues two of
   * these per message). Cancel with `cancel()`.
   */
  at (delay: number, f: () => void): { cancel: () => void } {
    const t = new Timer(this, f)
    this.enqueue(t, delay)
    return t
  }

  /** @internal (re)queue `a` at now + delay. */
  enqueue (a: Queued, delay: number): void {
    a.time = this.time + (Number.isFinite(delay) && delay > 0 ? delay : 0)
    a.seq = this.seq++
    if (a.pos < 0) {
      a.pos = this.heap.length
      this.heap.push(a)
      this.up(a.pos)
    } else {
      // rescheduled while queued: its key only grows (later time, later seq)
      this.down(a.pos)
    }
  }

  /** @internal take `a` out of the queue (it was cancelled): a cancelled timer costs nothing later. */
  remove (a: Queued): void {
    const i = a.pos
    if (i < 0) return
    a.pos = -1
    const last = this.heap.pop() as Queued
    if (i === this.heap.length) return
    this.heap[i] = last
    last.pos = i
    this.up(i)
    this.down(last.pos)
  }

  private up (i: number): void {
    const h = this.heap
    const a = h[i]
    while (i > 0) {
      const p = (i - 1) >> 2
      if (!before(a, h[p])) break
      h[i] = h[p]; h[i].pos = i; i = p
    }
    h[i] = a; a.pos = i
  }

  private down (i: number): void {
    const h = this.heap
    const n = h.length
    const a = h[i]
    for (;;) {
      const l = 4 * i + 1
      if (l >= n) break
      let c = l
      const e = Math.min(l + 4, n)
      for (let k = l + 1; k < e; k++) if (before(h[k], h[c])) c = k
      if (!before(h[c], a)) break
      h[i] = h[c]; h[i].pos = i; i = c
    }
    h[i] = a; a.pos = i
  }

  /** Actions waiting. */
  get queued (): number { return this.heap.length }

  /**
   * Run actions in time order until none is left, `stop()` is called, virtual time would pass
   * `untilMs`, or `maxActions` ran. Returns the virtual time reached.
   */
  run (untilMs = Infinity, maxActions = Infinity): number {
    this.stopped = false
    let n = 0
    while (!this.stopped && this.heap.length > 0 && n < maxActions) {
      const a = this.heap[0]
      if (a.time > untilMs) { this.time = untilMs; break }
      this.remove(a)
      this.time = a.time
      n++
      this.executed++
      a.execute()
    }
    return this.time
  }

  /** End `run()` after the current action. */
  stop (): void { this.stopped = true }
}

/** What the heap holds: an rxjs action or a bare timer. */
interface Queued { time: number, seq: number, pos: number, execute: () => void }

const before = (a: Queued, b: Queued): boolean => a.time < b.time || (a.time === b.time && a.seq < b.seq)

class Timer implements Queued {
  time = 0
  seq = 0
  pos = -1
  constructor (private readonly scheduler: SimScheduler, private readonly f: () => void) {}
  execute (): void { this.f() }
  cancel (): void { this.scheduler.remove(this) }
}

class SimAction<T> extends Subscription implements SchedulerAction<T>, Queued {
  time = 0
  seq = 0
  /** Index in the scheduler's heap; -1 when not queued. */
  pos = -1
  private state: T | undefined

  constructor (private readonly scheduler: SimScheduler, private readonly work: (this: SchedulerAction<T>, state: T) => void) {
    super(() => scheduler.remove(this))
  }

  schedule (state?: T, delay = 0): Subscription {
    if (this.closed) return this
    this.state = state
    this.scheduler.enqueue(this, delay)
    return this
  }

  execute (): void {
    this.work.call(this, this.state as T)
    // a one-shot action that did not queue itself again is finished
    if (this.pos < 0 && !this.closed) this.unsubscribe()
  }
}
