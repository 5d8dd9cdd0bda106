import { TestScheduler } from 'rxjs/testing'
import { defer, type Observable } from 'rxjs'
import { backoffDelay, retryBackoff } from '../../streams/retryBackoff'

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

describe('retryBackoff', () => {
  it('retries after waits that double, and passes the value through when it comes', () => {
    setup().run(({ cold, expectObservable }) => {
      const attempts = [cold('#'), cold('#'), cold('-v|')]
      let k = 0
      const src: Observable<string> = defer(() => attempts[k++])
      // waits 10 then 20: third attempt at 30, its value at 31
      expectObservable(src.pipe(retryBackoff({ retries: 5, initialMs: 10, maxMs: 1000 }))).toBe('31ms v|')
    })
  })

  it('gives up with the last error after `retries`', () => {
    setup().run(({ cold, expectObservable }) => {
      const err = new Error('down')
      // waits 10, 20: three attempts, then the error at 30
      expectObservable(cold('#', undefined, err).pipe(retryBackoff({ retries: 2, initialMs: 10, maxMs: 1000 }))).toBe('30ms #', undefined, err)
    })
  })

  it('caps the wait at maxMs', () => {
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, { retries: 9, initialMs: 10, maxMs: 50 }))).toEqual([10, 20, 40, 50, 50, 50])
  })

  it('draws each wait from [wait·(1-jitter), wait] with the injected random', () => {
    expect(backoffDelay(3, { retries: 9, initialMs: 100, maxMs: 1e6, jitter: 0.5, random: () => 0 })).toBe(400)
    expect(backoffDelay(3, { retries: 9, initialMs: 100, maxMs: 1e6, jitter: 0.5, random: () => 0.999999 })).toBe(200)
  })

  it('does not retry errors that shouldRetry refuses', () => {
    setup().run(({ cold, expectObservable }) => {
      const fatal = new Error('fatal')
      expectObservable(cold('-#', undefined, fatal).pipe(retryBackoff({ retries: 5, initialMs: 10, maxMs: 100, shouldRetry: () => false }))).toBe('-#', undefined, fatal)
    })
  })

  it('starts from the short wait again after a success', () => {
    setup().run(({ cold, expectObservable }) => {
      // fail (wait 10), value then fail (count reset: wait 10), fail (wait 20), succeed at 41
      const attempts = [cold('#'), cold('a#'), cold('#'), cold('b|')]
      let k = 0
      expectObservable(defer(() => attempts[k++]).pipe(retryBackoff({ retries: 5, initialMs: 10, maxMs: 1000 }))).toBe('10ms a 30ms b|')
    })
  })

  it('stops waiting when unsubscribed', () => {
    setup().run(({ cold, expectObservable, expectSubscriptions }) => {
      const src = cold('#')
      expectObservable(src.pipe(retryBackoff({ retries: 5, initialMs: 10, maxMs: 1000 })), '^ 4ms !').toBe('')
      expectSubscriptions(src.subscriptions).toBe(['(^!)'])
    })
  })
})
