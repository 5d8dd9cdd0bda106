import { asyncScheduler, concatMap, map, Observable, timer, type MonoTypeOperatorFunction, type SchedulerLike, type Subscriber, type Subscription } from 'rxjs'

/** Default bucket capacity as a fraction of the rate: a quarter second of traffic. */
const DEFAULT_BURST_SECONDS = 0.25
/**
 * Slack when comparing token counts: lazily refilled fractional tokens collect rounding error,
 * and without it a waiter due at exactly t could be pushed to t + 1 ms.
 */
const TOKEN_EPSILON = 1e-6

/** Rate suffixes: decimal (benchmarks report MB/s = 10^6 B/s) and binary (Ki/Mi/Gi). */
const RATE_UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 }
/** A number, an optional prefix (i for binary), an optional B (capital only: "Mb" is megabits) and "/s". */
const RATE_PATTERN = /^(\d+(?:\.\d+)?)\s*(?:([kKmMgG])(i)?)?B?(?:\/s)?$/

export interface TokenBucketOptions {
  /** Tokens (bytes) per second; Infinity or 0 = unlimited. */
  rate: number
  /**
   * Bucket capacity: how much may pass at once after a quiet spell. Default rate / 4. Items larger
   * than this still pass (see `TokenBucket.take`), so it needn't be sized for the largest item.
   */
  burst?: number
  scheduler?: SchedulerLike
  /**
   * Waiters with a priority (see `take`) move up one for each `ageMs` they waited, so none waits
   * forever behind a stream of more urgent ones. Default 10 ms.
   */
  ageMs?: number
}

interface Waiter {
  readonly n: number
  readonly sub: Subscriber<void>
  readonly priority: number
  readonly at: number
}

/** Grant of an unlimited bucket: synchronous, no queue, no timer. */
const GRANTED = new Observable<void>((sub) => { sub.next(); sub.complete() })

/**
 * A shared bucket: several streams (e.g. every connection of one node) draw from one budget.
 *
 * Tokens are refilled lazily from `scheduler.now()`; one timer at most is pending, set for the
 * moment the head waiter can go. Only subscribed `take`s wait, so the queue is as long as the
 * number of streams drawing from the bucket, never longer.
 */
export class TokenBucket {
  /** Bytes per second; Infinity when unlimited (a rate of 0 is reported as Infinity). */
  readonly rate: number
  /** Capacity; Infinity when unlimited. */
  readonly burst: number
  private readonly scheduler: SchedulerLike
  /** May go negative: the debt of an item larger than the bucket. */
  private tokens: number
  private last: number
  private readonly queue: Waiter[] = []
  private timer: Subscription | undefined
  private timerFor: Waiter | undefined
  private draining = false
  private readonly ageMs: number
  /** The waiting clock (see `waitClock`): the last reading, and how far the scheduler's clock went back in all. */
  private lastRead = -Infinity
  private setBack = 0

  constructor (opts: TokenBucketOptions) {
    if (typeof opts.rate !== 'number' || Number.isNaN(opts.rate) || opts.rate < 0) {
      throw new RangeError(`token bucket rate must be a number >= 0 (0 or Infinity: unlimited), got ${String(opts.rate)}`)
    }
    if (opts.burst !== undefined && !(Number.isFinite(opts.burst) && opts.burst > 0)) {
      throw new RangeError(`token bucket burst must be a finite number > 0, got ${String(opts.burst)}`)
    }
    if (opts.ageMs !== undefined && !(opts.ageMs > 0)) throw new RangeError(`token bucket ageMs must be > 0 (Infinity: priorities never age), got ${String(opts.ageMs)}`)
    this.rate = opts.rate === 0 ? Infinity : opts.rate
    this.burst = this.rate === Infinity ? Infinity : opts.burst ?? this.rate * DEFAULT_BURST_SECONDS
    this.scheduler = opts.scheduler ?? asyncScheduler
    this.ageMs = opts.ageMs ?? 10
    this.tokens = this.burst
    this.last = this.scheduler.now()
  }

  /**
   * Observable that emits once (then completes) when `n` tokens have been taken from the bucket,
   * waiting (in scheduler time) as long as needed; unsubscribing before it emits gives up its
   * place without consuming tokens. The next waiter served is the one with the lowest
   * `priority − waited / ageMs` (default priority 0), the longest waiting among equals: FIFO when
   * no one gives a priority.
   *
   * An `n` up to `burst` is taken once the bucket holds `n`. A larger `n` is taken once the bucket
   * is full, leaving it `n - burst` in debt that later takers wait out. So by time t at most
   * `max(burst, largest n) + rate·t` tokens have been granted, and no `n` can stall forever.
   */
  take (n: number, priority = 0): Observable<void> {
    if (!(Number.isFinite(n) && n >= 0)) throw new RangeError(`token count must be a finite number >= 0, got ${String(n)}`)
    if (!Number.isFinite(priority)) throw new RangeError(`priority must be a finite number, got ${String(priority)}`)
    if (this.rate === Infinity) return GRANTED
    return new Observable<void>((sub) => {
      const w: Waiter = { n, sub, priority, at: this.waitClock() }
      this.queue.push(w)
      this.drain()
      return () => {
        const i = this.queue.indexOf(w)
        if (i < 0) return // granted already
        this.queue.splice(i, 1)
        // the next waiter may be able to go now, or needs its own timer
        if (w === this.timerFor) this.drain()
      }
    })
  }

  /**
   * Give back `n` tokens taken for something that did not happen (a request declined before any
   * byte of it came): the bucket refills by that much, up to `burst`, and waiters may go at once.
   */
  give (n: number): void {
    if (this.rate === Infinity || !(Number.isFinite(n) && n > 0)) return
    this.refill()
    this.tokens = Math.min(this.burst, this.tokens + n)
    this.drain()
  }

  /**
   * Tokens granted ahead of the rate (an item larger than the bucket leaves it in debt): what
   * later takers wait out before anything more is granted. 0 when the bucket is not in debt.
   */
  owed (): number {
    if (this.rate === Infinity) return 0
    this.refill()
    return Math.max(0, -this.tokens)
  }

  /** The waiter served next (see `take`); the queue is short: the takes subscribed now (a peer's queued pieces, bounded by its BUSY threshold). */
  private next (): Waiter | undefined {
    const q = this.queue
    if (q.length < 2) return q[0]
    const now = this.waitClock()
    let best = q[0]
    let bestKey = best.priority - (now - best.at) / this.ageMs
    for (let i = 1; i < q.length; i++) {
      const key = q[i].priority - (now - q[i].at) / this.ageMs
      if (key < bestKey) { best = q[i]; bestKey = key }
    }
    return best
  }

  /**
   * The clock waiting times are read from: the scheduler's, except that it never goes back. The
   * default scheduler's clock is the wall clock: stepped back (by NTP, a resumed VM), it would make
   * the waiters already queued look younger than every newcomer, and they would wait out the step.
   */
  private waitClock (): number {
    const t = this.scheduler.now()
    if (t < this.lastRead) this.setBack += this.lastRead - t
    this.lastRead = t
    return t + this.setBack
  }

  private refill (): void {
    const now = this.scheduler.now()
    const elapsed = now - this.last
    this.last = now
    if (elapsed > 0) this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate / 1000)
  }

  /** What the bucket must hold before `n` is taken: `n`, or a full bucket for an oversized `n`. */
  private needed (n: number): number {
    return Math.min(n, this.burst)
  }

  /** Grant waiters from the head while the tokens last, then time the wake-up for the next one. */
  private drain (): void {
    // a grant runs downstream code synchronously, which may subscribe or drop waiters; the loop
    // below re-reads the queue each turn, so a nested call has nothing to add
    if (this.draining) return
    this.draining = true
    try {
      this.refill()
      while (this.queue.length > 0) {
        const head = this.next() as Waiter
        if (this.tokens + TOKEN_EPSILON < this.needed(head.n)) break
        this.queue.splice(this.queue.indexOf(head), 1)
        this.tokens -= head.n
        head.sub.next()
        head.sub.complete()
      }
    } finally {
      this.draining = false
    }
    this.schedule()
  }

  private schedule (): void {
    const head = this.next()
    if (head !== undefined && head === this.timerFor) return // refill is linear: still the right moment
    this.timer?.unsubscribe()
    this.timer = this.timerFor = undefined
    if (head === undefined) return
    // whole milliseconds, at least one: the timer can't fire early, and time always moves on
    const ms = Math.max(1, Math.ceil((this.needed(head.n) - this.tokens) * 1000 / this.rate))
    this.timerFor = head
    this.timer = timer(ms, this.scheduler).subscribe(() => {
      this.timer = this.timerFor = undefined
      this.drain()
    })
  }
}

/** Bytes of a Buffer / typed array, else 1 (a message counts as one token). */
function defaultCost (v: unknown): number {
  return ArrayBuffer.isView(v) ? v.byteLength : 1
}

/**
 * Delays each value until its cost (default: byte length of a Buffer / Uint8Array, else 1) is
 * granted by the bucket. Order is preserved and at most one value per stream waits on the bucket
 * (`concatMap`); values a push source sends meanwhile sit in `concatMap`'s buffer, so memory is
 * bounded by the source's own backpressure (pull it, as `leechPieces` does). Source errors pass at
 * once, dropping a waiting value; completion waits for the last value to be granted. With an
 * unlimited bucket the source passes through untouched.
 */
export function rateLimit<T> (bucket: TokenBucket, cost: (v: T) => number = defaultCost): MonoTypeOperatorFunction<T> {
  if (bucket.rate === Infinity) return (source) => source
  return concatMap((v: T) => bucket.take(cost(v)).pipe(map(() => v)))
}

/**
 * Parses a rate in bytes per second for `--upload-limit` / `--download-limit`: "100", "512k",
 * "20M", "1.5G" (k/M/G = 10^3/10^6/10^9, as the benchmarks' MB/s), "64Ki", "2Mi", "1Gi" (powers
 * of 1024); prefixes are case-insensitive, an optional "B" and "/s" may follow ("20MB/s").
 * "0" and "unlimited" give Infinity. Results are rounded to whole bytes per second.
 * Throws a RangeError for anything else, including a nonzero rate under 1 B/s (which would
 * otherwise round to 0, i.e. silently to unlimited) and lowercase "b" (bits).
 */
export function parseRate (s: string): number {
  const text = s.trim()
  if (text.toLowerCase() === 'unlimited') return Infinity
  const m = RATE_PATTERN.exec(text)
  if (m === null) {
    throw new RangeError(`rate "${s}" is not a number of bytes per second with an optional k/M/G (×1000) or Ki/Mi/Gi (×1024) suffix, or "unlimited"`)
  }
  const value = Number(m[1]) * RATE_UNITS[`${m[2] ?? ''}${m[3] ?? ''}`.toLowerCase()]
  if (value === 0) return Infinity
  const rate = Math.round(value)
  if (rate < 1) throw new RangeError(`rate "${s}" is below 1 byte per second (use 0 or "unlimited" for no limit)`)
  if (!Number.isSafeInteger(rate)) throw new RangeError(`rate "${s}" is too large`)
  return rate
}
