import { TestScheduler } from 'rxjs/testing'
import { Observable as RxObservable, tap, type Observable } from 'rxjs'
import { leechPieces } from '../../streams/leechPieces'

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

/** Offsets handed out in order from a list, like a picker with one source. */
function offsets (list: number[]): () => number | null {
  let i = 0
  return () => i < list.length ? list[i++] : null
}

describe('leechPieces', () => {
  it('asks for the next offset as each piece lands, and completes when the offsets run out', () => {
    setup().run(({ cold, expectObservable }) => {
      const asked: number[] = []
      const fetch = (o: number): Observable<string> => { asked.push(o); return cold('--p|', { p: `piece@${o}` }) }
      const out = leechPieces({ next: offsets([0, 10, 20]), fetch, pipeline: 1 })
      // each piece is passed on when its fetch completes (frame 3), and the next fetch starts then
      expectObservable(out).toBe('---a--b--(c|)', { a: 'piece@0', b: 'piece@10', c: 'piece@20' })
    })
  })

  it('pipelines: the second request goes out before the first piece lands', () => {
    setup().run(({ cold, expectObservable }) => {
      const fetch = (o: number): Observable<number> => cold(o === 0 ? '----p|' : '-p|', { p: o })
      // with pipeline 2, offset 1 is fetched alongside 0 and lands first
      expectObservable(leechPieces({ next: offsets([0, 1]), fetch, pipeline: 2 })).toBe('--b-a|', { a: 0, b: 1 })
    })
  })

  it('never has more than `pipeline` fetches open, and fetches every offset once', () => {
    const ts = setup()
    ts.run(({ cold, flush }) => {
      let open = 0; let peak = 0
      const counting = (o: number): Observable<number> => new RxObservable<number>((sub) => {
        open++; peak = Math.max(peak, open)
        const s = cold('-x|', { x: o }).subscribe(sub)
        return () => { open--; s.unsubscribe() }
      })
      const got: number[] = []
      let completed = false
      leechPieces({ next: offsets([...Array(20).keys()]), fetch: counting, pipeline: 3 }).subscribe({ next: (v) => got.push(v), complete: () => { completed = true } })
      flush()
      expect(peak).toBe(3)
      expect(got).toEqual([...Array(20).keys()])
      expect(completed).toBe(true)
      expect(open).toBe(0)
    })
  })

  it('follows a window that shrinks and grows, never past the pipeline', () => {
    const ts = setup()
    ts.run(({ cold, flush }) => {
      // requests in flight: asked and not yet answered
      let started = 0; let answered = 0
      const peaks: number[] = []
      let window = 3
      const fetch = (o: number): Observable<number> => new RxObservable<number>((sub) => {
        started++; peaks.push(started - answered)
        return cold('-x|', { x: o }).pipe(tap(() => answered++)).subscribe(sub)
      })
      const got: number[] = []
      leechPieces({ next: offsets([...Array(30).keys()]), fetch, pipeline: 4, window: () => window }).subscribe((v) => {
        got.push(v)
        if (got.length === 6) window = 1 // a slow source: one at a time
        if (got.length === 15) window = 10 // faster again: capped at the pipeline
      })
      flush()
      expect(got).toEqual([...Array(30).keys()])
      expect(peaks.slice(0, 3)).toEqual([1, 2, 3])
      expect(Math.max(...peaks.slice(0, 6))).toBe(3)
      // after the shrink the flight drains to one at a time; after the growth, the pipeline caps it
      const oneAtATime = peaks.slice(9, 14)
      expect(oneAtATime.every((p) => p === 1)).toBe(true)
      expect(Math.max(...peaks)).toBe(4)
      expect(started).toBe(30)
    })
  })

  it('errors when a fetch fails, and stops the other requests', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const ok = cold('----p|', { p: 'ok' })
      const bad = cold('-#', undefined, new Error('peer gone'))
      const out = leechPieces({ next: offsets([0, 1]), fetch: (o) => o === 0 ? ok : bad, pipeline: 2 })
      expectObservable(out).toBe('-#', undefined, new Error('peer gone'))
      expectSubscriptions(ok.subscriptions).toBe('^!')
    })
  })

  it('moves on to the next offset when a fetch ends without a piece (cancelled)', () => {
    setup().run(({ cold, expectObservable }) => {
      const fetch = (o: number): Observable<number> => o === 0 ? cold('--|') : cold('-p|', { p: o })
      // pipeline 1: offset 0 is cancelled at frame 2, then 1 is fetched and lands at frame 3
      expectObservable(leechPieces({ next: offsets([0, 1]), fetch, pipeline: 1 })).toBe('----(b|)', { b: 1 })
    })
  })

  it('fetches that end without a piece (declined, cancelled) free their places: the bound holds and every offset is asked once', () => {
    const ts = setup()
    ts.run(({ cold, flush }) => {
      let open = 0; let peak = 0
      const asked: number[] = []
      // one fetch in ten brings its piece, the others end empty (a BUSY, another source's win):
      // the empty ones alone must keep the loop going
      const fetch = (o: number): Observable<number> => new RxObservable<number>((sub) => {
        open++; peak = Math.max(peak, open); asked.push(o)
        const s = (o % 10 === 9 ? cold('--x|', { x: o }) : cold<number>(o % 2 === 0 ? '-|' : '--|')).subscribe(sub)
        return () => { open--; s.unsubscribe() }
      })
      const got: number[] = []
      let completed = false
      leechPieces({ next: offsets([...Array(30).keys()]), fetch, pipeline: 3 }).subscribe({ next: (v) => got.push(v), complete: () => { completed = true } })
      flush()
      expect(peak).toBe(3)
      expect(asked.sort((a, b) => a - b)).toEqual([...Array(30).keys()])
      expect(got).toEqual([9, 19, 29])
      expect(completed).toBe(true)
      expect(open).toBe(0)
    })
  })

  it('completes at once when there is nothing to fetch', () => {
    setup().run(({ expectObservable }) => {
      expectObservable(leechPieces({ next: () => null, fetch: () => { throw new Error('not called') }, pipeline: 4 })).toBe('|')
    })
  })

  it('cancels in-flight requests on early unsubscribe', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const slow = cold('------p|')
      const out = leechPieces({ next: offsets([0, 1, 2]), fetch: () => slow, pipeline: 2 })
      expectObservable(out, '^--!').toBe('---')
      expectSubscriptions(slow.subscriptions).toBe(['^--!', '^--!'])
    })
  })

  describe('idle', () => {
    it('rests on idle() when nothing is in flight and nothing is offered, then asks again on its first value', () => {
      setup().run(({ cold, expectObservable, expectSubscriptions }) => {
        // what the source offers: offset 0 now; offset 1 only once the rest hears news (frame 6)
        const offered = [0]
        const next = (): number | null => offered.shift() ?? null
        const fetch = (o: number): Observable<number> => cold('-p|', { p: o })
        const rests = [cold('----n-n|'), cold('--|')]
        let r = 0
        const out = leechPieces({ next, fetch, pipeline: 2, idle: () => rests[r++].pipe(tap(() => offered.push(1))) })
        // 0 lands at frame 1: nothing is in flight, the loop rests from there; the rest's first
        // value (frame 5) asks again: 1 lands at 6; the second rest ends empty (frame 8): so does
        // the loop
        expectObservable(out).toBe('-a----b-|', { a: 0, b: 1 })
        // the first rest is left at its first value, the second ends by itself
        expectSubscriptions(rests[0].subscriptions).toBe('-^---!')
        expectSubscriptions(rests[1].subscriptions).toBe('------^-!')
      })
    })

    it('does not rest while a request is in flight', () => {
      setup().run(({ cold, expectObservable, expectSubscriptions }) => {
        const fetch = (o: number): Observable<number> => cold(o === 0 ? '-p|' : '-----p|', { p: o })
        const rest = cold('|')
        // 0 lands at frame 1 (passed on at 2, when its fetch frees a slot) with 1 still in flight:
        // the rest starts only when 1 lands (5)
        const out = leechPieces({ next: offsets([0, 1]), fetch, pipeline: 2, idle: () => rest })
        expectObservable(out).toBe('--a--b|', { a: 0, b: 1 })
        expectSubscriptions(rest.subscriptions).toBe('-----(^!)')
      })
    })

    it('is the same loop after a rest: the bound on requests in flight holds across rests', () => {
      const ts = setup()
      ts.run(({ cold, flush }) => {
        let open = 0; let peak = 0; let subscribed = 0
        const counting = (o: number): Observable<number> => new RxObservable<number>((sub) => {
          open++; peak = Math.max(peak, open)
          const s = cold('-x|', { x: o }).subscribe(sub)
          return () => { open--; s.unsubscribe() }
        })
        // offsets come in bursts of 5 with nothing between them; 4 rests, each over at its first value
        const bursts = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
        let b = 0; let i = 0
        const next = (): number | null => { if (b < bursts.length && i < bursts[b].length) return bursts[b][i++]; return null }
        const loop = leechPieces({
          next,
          fetch: counting,
          pipeline: 3,
          idle: () => { b++; i = 0; return b < bursts.length ? cold('--n') : cold('|') },
        })
        const got: number[] = []
        let completed = false
        new RxObservable<number>((sub) => { subscribed++; return loop.subscribe(sub) }).subscribe({ next: (v) => got.push(v), complete: () => { completed = true } })
        flush()
        expect(peak).toBe(3)
        expect(got).toEqual([...Array(20).keys()])
        expect(completed).toBe(true)
        expect(open).toBe(0)
        expect(subscribed).toBe(1)
      })
    })

    it('an error of the rest ends the loop with it', () => {
      setup().run(({ cold, expectObservable }) => {
        const out = leechPieces({ next: offsets([0]), fetch: (o) => cold('-p|', { p: o }), pipeline: 1, idle: () => cold('--#', undefined, new Error('gone')) })
        expectObservable(out).toBe('--a-#', { a: 0 }, new Error('gone'))
      })
    })
  })
})
