import { TestScheduler } from 'rxjs/testing'
import { concatMap, from, map, timer, type SchedulerLike } from 'rxjs'
import { parseRate, rateLimit, TokenBucket } from '../../streams/rateLimit'
import { seeded } from '../helpers/random'

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

/** Marble values: letters a–e are 1000-byte Buffers, h is 500 bytes, B is 5000 (bigger than the bursts used). */
const bytes = {
  a: Buffer.alloc(1000, 'a'), b: Buffer.alloc(1000, 'b'), c: Buffer.alloc(1000, 'c'), d: Buffer.alloc(1000, 'd'), e: Buffer.alloc(1000, 'e'),
  h: Buffer.alloc(500, 'h'), B: Buffer.alloc(5000, 'B'),
}
/** What a grant of `take` emits. */
const granted = { g: undefined }


describe('rateLimit', () => {
  it('passes everything through synchronously when unlimited (rate Infinity or 0)', () => {
    for (const rate of [Infinity, 0]) {
      const ts = setup()
      ts.run(({ cold, expectObservable, expectSubscriptions }) => {
        const bucket = new TokenBucket({ rate })
        expect(bucket.rate).toBe(Infinity)
        const src = cold('-a-(bBc)-d|', bytes)
        expectObservable(src.pipe(rateLimit(bucket))).toBe('-a-(bBc)-d|', bytes)
        expectSubscriptions(src.subscriptions).toBe('^---------!')
      })
      // take() grants inside subscribe and never sets a timer
      const bucket = new TokenBucket({ rate, scheduler: ts })
      let got = 0
      for (let i = 0; i < 3; i++) bucket.take(1e12).subscribe(() => got++)
      expect(got).toBe(3)
      expect(ts.actions).toHaveLength(0)
    }
  })

  it('spaces 1000-byte Buffers 100 ms apart at 10 000 B/s with a 1000-byte burst', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000 })
      const src = cold('(abcd|)', bytes)
      expectObservable(src.pipe(rateLimit(bucket))).toBe('a 99ms b 99ms c 99ms (d|)', bytes)
      expectSubscriptions(src.subscriptions).toBe('(^!)')
    })
  })

  it('does not delay a source that is slower than the rate', () => {
    setup().run(({ cold, expectObservable }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000 })
      expectObservable(cold('a 149ms b 99ms c|', bytes).pipe(rateLimit(bucket))).toBe('a 149ms b 99ms c|', bytes)
    })
  })

  it('lets a burst through at once, then settles to the rate', () => {
    setup().run(({ cold, expectObservable }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 3000 })
      expectObservable(cold('(abcde|)', bytes).pipe(rateLimit(bucket))).toBe('(abc) 95ms d 99ms (e|)', bytes)
    })
  })

  it('defaults the burst to a quarter second of the rate', () => {
    setup().run(({ cold, expectObservable }) => {
      const bucket = new TokenBucket({ rate: 4000 })
      expect(bucket.burst).toBe(1000)
      expectObservable(cold('(abc|)', bytes).pipe(rateLimit(bucket))).toBe('a 249ms b 249ms (c|)', bytes)
    })
  })

  it('uses the cost function when given one', () => {
    setup().run(({ cold, expectObservable }) => {
      const bucket = new TokenBucket({ rate: 100, burst: 10 })
      // messages of n tokens each; by default a non-Buffer would cost 1
      const src = cold('(xyz|)', { x: 10, y: 5, z: 2 })
      expectObservable(src.pipe(rateLimit(bucket, (n: number) => n))).toBe('x 49ms y 19ms (z|)', { x: 10, y: 5, z: 2 })
      // default cost of a non-Buffer: 1 token, so plain values under the burst pass at once
      expectObservable(cold('(pq|)').pipe(rateLimit(new TokenBucket({ rate: 100, burst: 2 })))).toBe('(pq|)')
    })
  })

  it('splits the rate between streams sharing a bucket: together they get exactly the rate', () => {
    setup().run(({ cold, expectObservable }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000 })
      const one = cold('(abcd|)', bytes).pipe(rateLimit(bucket))
      const two = cold('(abcd|)', bytes).pipe(rateLimit(bucket))
      // after the burst they take turns, each at half the rate: 8000 bytes by 700 ms = 1000 + 10 000 × 0.7
      expectObservable(one).toBe('a 99ms b 199ms c 199ms (d|)', bytes)
      expectObservable(two).toBe('200ms a 199ms b 199ms c 99ms (d|)', bytes)
    })
  })

  it('passes an item larger than the burst once the bucket is full; later items wait out the debt', () => {
    setup().run(({ cold, expectObservable }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000 })
      // B (5000) goes at once from a full bucket, leaving it 4000 in debt: a waits 500 ms for its 1000
      expectObservable(cold('(Bab|)', bytes).pipe(rateLimit(bucket))).toBe('B 499ms a 99ms (b|)', bytes)
    })
    setup().run(({ cold, expectObservable }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000 })
      // after h (500) the bucket is half full: B waits 50 ms for it to fill, then a waits out the debt
      expectObservable(cold('(hBa|)', bytes).pipe(rateLimit(bucket))).toBe('h 49ms B 499ms (a|)', bytes)
    })
  })

  it('owed(): the debt an item larger than the burst left, repaid at the rate; 0 when not in debt or unlimited', () => {
    const ts = setup()
    ts.run(({ flush }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000, scheduler: ts })
      expect(bucket.owed()).toBe(0)
      bucket.take(5000).subscribe()
      expect(bucket.owed()).toBe(4000)
      ts.schedule(() => { expect(bucket.owed()).toBeCloseTo(3000) }, 100)
      ts.schedule(() => { expect(bucket.owed()).toBe(0) }, 400)
      flush()
      bucket.take(500).subscribe() // within the burst: no debt
      expect(bucket.owed()).toBe(0)
    })
    expect(new TokenBucket({ rate: Infinity }).owed()).toBe(0)
  })

  it('give(n): tokens given back let a waiter go at once, never beyond the burst; a no-op when unlimited', () => {
    const ts = setup()
    ts.run(({ flush }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000, scheduler: ts })
      const at: number[] = []
      bucket.take(1000).subscribe(() => at.push(ts.now())) // empties the bucket
      bucket.take(1000).subscribe(() => at.push(ts.now())) // would wait 100 ms
      ts.schedule(() => { bucket.give(1000) }, 10) // the first was declined: its tokens come back
      flush()
      expect(at).toEqual([0, 10])
      // (the bucket then held 100 refilled + 1000 given, capped at 1000: 1000 more takes 100 ms after)
      bucket.give(5000)
      bucket.take(1000).subscribe(() => at.push(ts.now()))
      bucket.take(1000).subscribe(() => at.push(ts.now()))
      flush()
      expect(at.slice(2)).toEqual([10, 110])
    })
    expect(() => { new TokenBucket({ rate: Infinity }).give(10) }).not.toThrow()
  })

  it('completes when the last value has been granted', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000 })
      const src = cold('(ab|)', bytes)
      expectObservable(src.pipe(rateLimit(bucket))).toBe('a 99ms (b|)', bytes)
      expectSubscriptions(src.subscriptions).toBe('(^!)')
      // nothing waiting: completion is not delayed
      const idle = cold('300ms c|', bytes)
      expectObservable(idle.pipe(rateLimit(bucket))).toBe('300ms c|', bytes)
    })
  })

  it('passes a source error at once, dropping the waiting value without spending its tokens', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000 })
      const boom = new Error('peer gone')
      const src = cold('-a-b-#', bytes, boom)
      expectObservable(src.pipe(rateLimit(bucket))).toBe('-a---#', bytes, boom)
      expectSubscriptions(src.subscriptions).toBe('^----!')
      // b never got its tokens: the next taker is granted when the bucket refills after a, at 101
      expectObservable(cold('10ms c|', bytes).pipe(rateLimit(bucket))).toBe('101ms (c|)', bytes)
    })
  })

  it('cancels the pending wait on early unsubscribe; its place and tokens go to the next taker', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000 })
      const first = cold('(ab)', bytes)
      const second = cold('10ms h', bytes)
      // first's b waits at the head (due at 100) until first is dropped at 50
      expectObservable(first.pipe(rateLimit(bucket)), '^ 49ms !').toBe('a', bytes)
      expectSubscriptions(first.subscriptions).toBe('^ 49ms !')
      // second's h (500) was queued behind b; the 500 tokens there at 50 are its at once
      expectObservable(second.pipe(rateLimit(bucket))).toBe('50ms h', bytes)
    })
  })

  it('leaves no timer behind when the last waiter gives up', () => {
    const ts = setup()
    const bucket = new TokenBucket({ rate: 1000, burst: 1000, scheduler: ts })
    const live = (): number => ts.actions.filter((a) => !a.closed).length
    bucket.take(1000).subscribe()
    const waiting = bucket.take(500).subscribe()
    const behind = bucket.take(500).subscribe()
    expect(live()).toBe(1) // one wake-up, for the head
    behind.unsubscribe()
    expect(live()).toBe(1)
    waiting.unsubscribe()
    expect(live()).toBe(0)
    // and the tokens nobody took are still there: 500 after half a second (outside run(), a
    // TestScheduler flushes up to frame 750 only)
    let at = -1
    ts.schedule(() => bucket.take(500).subscribe(() => { at = ts.now() }), 500)
    ts.flush()
    expect(at).toBe(500)
  })

  it('serves waiters first in, first out: a small take does not overtake a big one', () => {
    setup().run(({ expectObservable }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000 })
      expectObservable(bucket.take(1000)).toBe('(g|)', granted)
      expectObservable(bucket.take(800)).toBe('80ms (g|)', granted)
      // a waiter behind the head that gives up changes nothing for the others
      expectObservable(bucket.take(300), '^ 39ms !').toBe('-', granted)
      // 100 tokens are there from 10 ms, but the 800 ahead goes first
      expectObservable(bucket.take(100)).toBe('90ms (g|)', granted)
      // a late taker joins the back of the queue, though 200 tokens are there when it comes
      expectObservable(bucket.take(50), '20ms ^').toBe('95ms (g|)', granted)
    })
  })

  it('serves the lowest priority first among waiters, the longest waiting among equals', () => {
    setup().run(({ expectObservable }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000, ageMs: 10 })
      expectObservable(bucket.take(1000)).toBe('(g|)', granted)
      // waiting since 0 with priority 5; the priority-0 one that comes at 10 ms goes first (at 100
      // ms: 5 - 100/10 = -5 against 0 - 90/10 = -9)
      expectObservable(bucket.take(1000, 5)).toBe('200ms (g|)', granted)
      expectObservable(bucket.take(1000, 0), '10ms ^').toBe('100ms (g|)', granted)
      // two of the same priority: first come, first served
      expectObservable(bucket.take(1000, 5), '20ms ^').toBe('300ms (g|)', granted)
    })
  })

  it('moves a waiter up one priority for every ageMs it waited: none waits forever behind more urgent ones', () => {
    setup().run(({ expectObservable }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000, ageMs: 10 })
      expectObservable(bucket.take(1000)).toBe('(g|)', granted)
      // at 100 ms: 3 - 100/10 = -7 against 0 - 40/10 = -4: the older one goes first
      expectObservable(bucket.take(1000, 3)).toBe('100ms (g|)', granted)
      expectObservable(bucket.take(1000, 0), '60ms ^').toBe('200ms (g|)', granted)
    })
  })

  it('measures waiting on a clock that never goes back: a wall clock stepped back does not put newcomers ahead of older waiters', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      let skew = 0
      const scheduler = { now: () => ts.now() + skew, schedule: ts.schedule.bind(ts) } as unknown as SchedulerLike
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000, ageMs: 10, scheduler })
      expectObservable(bucket.take(1000)).toBe('(g|)', granted)
      ts.schedule(() => { skew = -10_000 }, 50) // the clock steps back 10 s at 50 ms
      // (the 50 ms before the step are not refilled: the first grant comes at 160 ms, not 100)
      expectObservable(bucket.take(1000, 5)).toBe('160ms (g|)', granted)
      // the same priority, 60 ms later but with a clock reading 10 s earlier: still after the first
      expectObservable(bucket.take(1000, 5), '60ms ^').toBe('260ms (g|)', granted)
    })
  })

  it('a more urgent waiter that gives up hands the turn back', () => {
    setup().run(({ expectObservable }) => {
      const bucket = new TokenBucket({ rate: 10_000, burst: 1000, ageMs: 10 })
      expectObservable(bucket.take(1000)).toBe('(g|)', granted)
      expectObservable(bucket.take(500, 9)).toBe('50ms (g|)', granted)
      // would go first (needs all 1000 tokens, at 100 ms) but leaves at 30 ms: the 500 goes at 50 ms
      expectObservable(bucket.take(1000, 0), '^ 29ms !').toBe('-', granted)
    })
  })

  it('rejects bad arguments loudly', () => {
    expect(() => new TokenBucket({ rate: -1 })).toThrow(RangeError)
    expect(() => new TokenBucket({ rate: NaN })).toThrow(RangeError)
    for (const burst of [0, -5, Infinity, NaN]) expect(() => new TokenBucket({ rate: 1000, burst })).toThrow(RangeError)
    const bucket = new TokenBucket({ rate: 1000 })
    for (const n of [-1, NaN, Infinity]) expect(() => bucket.take(n)).toThrow(RangeError)
    for (const p of [NaN, Infinity, -Infinity]) expect(() => bucket.take(1, p)).toThrow(RangeError)
    for (const ageMs of [0, -1, NaN]) expect(() => new TokenBucket({ rate: 1000, ageMs })).toThrow(RangeError)
    setup().run(({ cold, expectObservable }) => {
      // a cost function that returns garbage is a bug: the stream errors
      expectObservable(cold('-x|').pipe(rateLimit(bucket, () => NaN))).toBe('-#', undefined, expect.any(RangeError))
    })
  })

  describe('over a long seeded random run', () => {
    /** Three streams with random gaps share one bucket; returns [time, bytes] of every grant, in order. */
    function run (seed: number, rate: number, burst: number, maxBytes: number): { sent: Array<[number, number]>, largest: number, total: number, items: number } {
      const rand = seeded(seed)
      const sent: Array<[number, number]> = []
      let largest = 0; let total = 0; let items = 0
      const ts = setup()
      ts.run(() => {
        const bucket = new TokenBucket({ rate, burst })
        for (let s = 0; s < 3; s++) {
          const load = Array.from({ length: 200 }, () => ({ gap: Math.floor(rand() * 30), size: 1 + Math.floor(rand() * maxBytes) }))
          for (const { size } of load) { largest = Math.max(largest, size); total += size; items++ }
          from(load).pipe(
            concatMap(({ gap, size }) => timer(gap).pipe(map(() => Buffer.alloc(size)))),
            rateLimit(bucket),
          ).subscribe((buf) => sent.push([ts.now(), buf.length]))
        }
      })
      return { sent, largest, total, items }
    }

    /** Every grant is within `cap + rate·t`, and the last is not later than the rate allows for (no stalls). */
    function check (r: ReturnType<typeof run>, rate: number, cap: number): void {
      expect(r.sent).toHaveLength(r.items)
      let emitted = 0
      for (const [t, n] of r.sent) {
        emitted += n
        expect(emitted).toBeLessThanOrEqual(cap + rate * t / 1000 + 1e-6)
      }
      const end = r.sent[r.sent.length - 1][0]
      expect(end).toBeLessThanOrEqual((r.total - cap) * 1000 / rate * 1.01)
    }

    it('never emits more than burst + rate·t by time t', () => {
      const rate = 50_000; const burst = 8000
      const r = run(0x5eed, rate, burst, burst)
      check(r, rate, burst)
    })

    it('with items up to 3× the burst, never emits more than max(burst, largest item) + rate·t', () => {
      const rate = 50_000; const burst = 8000
      const r = run(0xb16, rate, burst, 3 * burst)
      expect(r.largest).toBeGreaterThan(burst)
      check(r, rate, Math.max(burst, r.largest))
    })
  })
})

describe('parseRate', () => {
  it.each<[string, number]>([
    ['100', 100], ['512k', 512_000], ['512K', 512_000], ['20M', 20_000_000], ['1.5G', 1_500_000_000],
    ['64Ki', 65_536], ['2Mi', 2 * 1024 ** 2], ['1Gi', 1024 ** 3], ['1.5Mi', 1_572_864],
    ['20MB', 20_000_000], ['20MB/s', 20_000_000], ['20M/s', 20_000_000], ['100B', 100], [' 8 M ', 8_000_000], ['2.4', 2],
    ['0', Infinity], ['0k', Infinity], ['0.0', Infinity], ['unlimited', Infinity], ['Unlimited', Infinity],
  ])('parses %j as %d B/s', (s, want) => {
    expect(parseRate(s)).toBe(want)
  })

  it.each([
    '', ' ', 'abc', '-5', '10X', '1.2.3', '1e6', '.5k', 'Infinity', 'NaN', 'k',
    '20Mb', // bits, not bytes
    '5i', '1kk', '1MI',
    '0.4', // under 1 B/s: must not round to 0, which would mean unlimited
    '99999999999G', // not a safe integer
  ])('rejects %j with a RangeError', (s) => {
    expect(() => parseRate(s)).toThrow(RangeError)
  })
})
