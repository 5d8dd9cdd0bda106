import { TestScheduler } from 'rxjs/testing'
import { batchWithin } from '../../streams/batchWithin'

const newScheduler = (): TestScheduler => new TestScheduler((a, e) => expect(a).toEqual(e))

describe('batchWithin', () => {
  it('emits what came together when the source completes', () => {
    newScheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('a-b-c|').pipe(batchWithin(10))).toBe('-----(x|)', { x: ['a', 'b', 'c'] })
    })
  })

  it('a straggler holds back the first values no longer than the wait; later values form the next batch', () => {
    newScheduler().run(({ cold, expectObservable }) => {
      // a at 0 opens a batch that is emitted at 5 (b with it); c at 8 opens the next, flushed by completion at 11
      expectObservable(cold('a-b-----c--|').pipe(batchWithin(5))).toBe('-----x-----(y|)', { x: ['a', 'b'], y: ['c'] })
      // d at 0 opens a batch emitted at 5; e at 8 opens one emitted by its own wait at 13, before completion at 20
      expectObservable(cold('d-------e-----------|').pipe(batchWithin(5))).toBe('-----x-------y------|', { x: ['d'], y: ['e'] })
    })
  })

  it('emits nothing for a source that completes empty, and passes errors on', () => {
    newScheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('---|').pipe(batchWithin(5))).toBe('---|')
      expectObservable(cold('a-#').pipe(batchWithin(5))).toBe('--#')
    })
  })
})
