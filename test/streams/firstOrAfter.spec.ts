import { NEVER, of, Subject } from 'rxjs'
import { TestScheduler } from 'rxjs/testing'
import { firstOrAfter } from '../../streams/firstOrAfter'

const sched = (): TestScheduler => new TestScheduler((a, b) => expect(a).toEqual(b))

describe('firstOrAfter', () => {
  it('gives the first value and stops listening', () => {
    const ts = sched()
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const src = cold('--a--b|')
      expectObservable(firstOrAfter(src, 10, ts)).toBe('--(a|)')
      expectSubscriptions(src.subscriptions).toBe('^-!')
    })
  })

  it('gives undefined when the time runs out first, and stops listening', () => {
    const ts = sched()
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const src = cold('-----a|')
      expectObservable(firstOrAfter(src, 3, ts)).toBe('---(u|)', { u: undefined })
      expectSubscriptions(src.subscriptions).toBe('^--!')
    })
  })

  it('a source that completes empty leaves the timer to end the wait; an error ends it at once', () => {
    const ts = sched()
    ts.run(({ cold, expectObservable }) => {
      expectObservable(firstOrAfter(cold('-|'), 4, ts)).toBe('----(u|)', { u: undefined })
      expectObservable(firstOrAfter(cold('-#'), 4, ts)).toBe('-#')
    })
  })

  it('a value given at once needs no timer', () => {
    const ts = sched()
    ts.run(({ expectObservable }) => {
      expectObservable(firstOrAfter(of('x'), 5, ts)).toBe('(x|)')
      // nothing left scheduled behind it: only the never-ending wait below holds the clock
      expectObservable(firstOrAfter(NEVER, 2, ts)).toBe('--(u|)', { u: undefined })
    })
  })

  it('unsubscribing cancels the timer and the source', () => {
    const ts = sched()
    ts.run(({ flush }) => {
      const s = new Subject<number>()
      const got: unknown[] = []
      const sub = firstOrAfter(s, 5, ts).subscribe({ next: (v) => got.push(v), complete: () => got.push('done') })
      expect(ts.actions.length).toBe(1)
      sub.unsubscribe()
      expect(ts.actions.length).toBe(0)
      flush()
      s.next(1)
      expect(got).toEqual([])
      expect(s.observed).toBe(false)
    })
  })
})
