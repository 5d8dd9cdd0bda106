import { Subscription, type SchedulerAction, type SchedulerLike } from 'rxjs'

/**
 * A discrete-event scheduler for simulations: virtual time in milliseconds, actions run in
 * (time, order of scheduling) order, so a run is a pure function of its inputs. It is an rxjs
 * `SchedulerLike`, so the production flows (timeouts, timers, retries) run on it unchanged.
 *
 * rxjs's own VirtualTimeScheduler keeps its queue as a sorted array (every schedule re-sorts);
 * with thousands of nodes each holding a few timers that is quadratic. This one keeps a heap of
 * live actions: O(log n) to schedule, reschedule or cancel, 4-ary (half the levels of a binary
 * one, a node's children side by side), for what is due soon, and unordered buckets by 50 ms slot
 * for what is due later: a timeout is O(1) to set and to cancel. A cancelled timer leaves the
 * queue at once, so it holds no memory until its time would come.
 */
export class SimScheduler implements SchedulerLike {
  private time = 0
  private seq = 0
  private readonly heap: Queued[] = []
  /**
   * Actions due in a later slot of SLOT_MS than the heap covers, by slot, unordered: most of them
   * are timeouts cancelled long before they are due (half of all actions scheduled in a swarm),
   * and leaving a bucket costs O(1) where leaving the heap costs a sift. The next slot's actions
   * move into the heap when it runs dry.
   */
  private readonly far = new Map<number, Queued[]>()
  /** The slots in `far`, in order (some may have emptied). */
  private farSlots: number[] = []
  /** The heap holds the actions of this slot and earlier ones; `far`, those of later slots. */
  private heapSlot = 0
  private farCount = 0
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
    if (a.pos >= 0) this.remove(a)
    a.time = this.time + (Number.isFinite(delay) && delay > 0 ? delay : 0)
    a.seq = this.seq++
    const slot = Math.floor(a.time / SLOT_MS)
    if (slot <= this.heapSlot) {
      a.slot = -1
      a.pos = this.heap.length
      this.heap.push(a)
      this.up(a.pos)
      return
    }
    let bucket = this.far.get(slot)
    if (bucket === undefined) {
      bucket = []
      this.far.set(slot, bucket)
      const f = this.farSlots
      let i = f.length
      while (i > 0 && f[i - 1] > slot) i--
      f.splice(i, 0, slot)
    }
    a.slot = slot
    a.pos = bucket.length
    bucket.push(a)
    this.farCount++
  }

  /** @internal take `a` out of the queue (it was cancelled): a cancelled timer costs nothing later. */
  remove (a: Queued): void {
    const i = a.pos
    if (i < 0) return
    a.pos = -1
    if (a.slot >= 0) {
      const bucket = this.far.get(a.slot) as Queued[]
      const last = bucket.pop() as Queued
      if (last !== a) { bucket[i] = last; last.pos = i }
      this.farCount--
      return
    }
    const last = this.heap.pop() as Queued
    if (i === this.heap.length) return
    this.heap[i] = last
    last.pos = i
    this.up(i)
    this.down(last.pos)
  }

  /**
   * The heap ran dry: move the earliest far slot into it. (The heap only ever holds actions of
   * slots up to `heapSlot`, every far one is in a later slot, so nothing far can be due before
   * anything in the heap.)
   */
  private pull (): void {
    const slot = this.farSlots.shift() as number
    const bucket = this.far.get(slot) as Queued[]
    this.far.delete(slot)
    this.heapSlot = slot
    for (const a of bucket) {
      a.slot = -1
      a.pos = this.heap.length
      this.heap.push(a)
      this.up(a.pos)
    }
    this.farCount -= bucket.length
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
  get queued (): number { return this.heap.length + this.farCount }

  /**
   * Run actions in time order until none is left, `stop()` is called, virtual time would pass
   * `untilMs`, or `maxActions` ran. Returns the virtual time reached.
   */
  run (untilMs = Infinity, maxActions = Infinity): number {
    this.stopped = false
    let n = 0
    while (!this.stopped && n < maxActions) {
      while (this.heap.length === 0 && this.farSlots.length > 0) this.pull()
      if (this.heap.length === 0) break
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

/** Width of a slot of far actions, virtual ms. */
const SLOT_MS = 50

/** What the queue holds: an rxjs action or a bare timer. `pos`: its index in the heap (`slot` -1) or in its far slot's bucket; -1 when not queued. */
export interface Queued { time: number, seq: number, pos: number, slot: number, execute: () => void }

const before = (a: Queued, b: Queued): boolean => a.time < b.time || (a.time === b.time && a.seq < b.seq)

class Timer implements Queued {
  time = 0
  seq = 0
  pos = -1
  slot = -1
  constructor (private readonly scheduler: SimScheduler, private readonly f: () => void) {}
  execute (): void { this.f() }
  cancel (): void { this.scheduler.remove(this) }
}

class SimAction<T> extends Subscription implements SchedulerAction<T>, Queued {
  time = 0
  seq = 0
  /** Index in the scheduler's heap or far slot; -1 when not queued. */
  pos = -1
  slot = -1
  private state: T | undefined

  constructor (private readonly scheduler: SimScheduler, private readonly work: (this: SchedulerAction<T>, state: T) => void) {
    super()
  }

  // (leaves the queue first; no teardown closure per action: a big run makes millions of these)
  override unsubscribe (): void {
    if (this.closed) return
    this.scheduler.remove(this)
    super.unsubscribe()
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
