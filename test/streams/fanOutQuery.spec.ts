import { TestScheduler } from 'rxjs/testing'
import { Observable } from 'rxjs'
import { fanOutQuery } from '../../streams/fanOutQuery'

const timedOut = new Error('timed out')

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

describe('fanOutQuery', () => {
  it('merges every target\'s first answer as it arrives', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const a = cold('--x|')
      const b = cold('-y|')
      const c = cold('----zw|')
      const q = { a, b, c } as Record<string, Observable<string>>
      const out = fanOutQuery(['a', 'b', 'c'], (t) => q[t], { timeoutMs: 10, concurrency: 3 })
      expectObservable(out).toBe('-BA-(C|)', {
        A: { target: 'a', value: 'x' }, B: { target: 'b', value: 'y' }, C: { target: 'c', value: 'z' },
      })
      // a target that keeps talking is unsubscribed after its first answer
      expectSubscriptions(c.subscriptions).toBe('^---!')
    })
  })

  it('turns a silent target into an error value after its timeout and moves on', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const silent = cold('-------')
      const fast = cold('-f|')
      const out = fanOutQuery(['silent', 'fast'], (t) => t === 'silent' ? silent : fast, { timeoutMs: 4, concurrency: 2, onTimeout: () => timedOut })
      expectObservable(out).toBe('-F--(S|)', {
        F: { target: 'fast', value: 'f' }, S: { target: 'silent', error: timedOut },
      })
      expectSubscriptions(silent.subscriptions).toBe('^---!')
    })
  })

  it('turns a failing or empty target into an error value, never an error of the whole fan-out', () => {
    setup().run(({ cold, expectObservable }) => {
      const boom = new Error('refused')
      const q: Record<string, Observable<string>> = { bad: cold('-#', undefined, boom), empty: cold('--|'), ok: cold('---o|') }
      const out = fanOutQuery(['bad', 'empty', 'ok'], (t) => q[t], { timeoutMs: 10, concurrency: 3 })
      expectObservable(out).toBe('-EN(O|)', {
        E: { target: 'bad', error: boom }, N: { target: 'empty', error: expect.any(Error) }, O: { target: 'ok', value: 'o' },
      })
    })
  })

  it('queries at most `concurrency` targets at once', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const a = cold('--a|'); const b = cold('---b|'); const c = cold('--c|')
      const q: Record<string, Observable<string>> = { a, b, c }
      const out = fanOutQuery(['a', 'b', 'c'], (t) => q[t], { timeoutMs: 10, concurrency: 2 })
      // c waits for a free slot: a's answer at frame 2 frees one
      expectObservable(out).toBe('--AB(C|)', { A: { target: 'a', value: 'a' }, B: { target: 'b', value: 'b' }, C: { target: 'c', value: 'c' } })
      expectSubscriptions(c.subscriptions).toBe('--^-!')
    })
  })

  it('stops every query when unsubscribed early', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const a = cold('-----a|'); const b = cold('------b|')
      const q: Record<string, Observable<string>> = { a, b }
      const out = fanOutQuery(['a', 'b'], (t) => q[t], { timeoutMs: 10, concurrency: 2 })
      expectObservable(out, '^--!').toBe('---')
      expectSubscriptions(a.subscriptions).toBe('^--!')
      expectSubscriptions(b.subscriptions).toBe('^--!')
    })
  })

  it('completes at once with no targets', () => {
    setup().run(({ expectObservable }) => {
      expectObservable(fanOutQuery([], () => { throw new Error('never called') }, { timeoutMs: 1, concurrency: 1 })).toBe('|')
    })
  })
})
