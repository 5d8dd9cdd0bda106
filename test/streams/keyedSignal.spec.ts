import { KeyedSignal } from '../../streams/keyedSignal'

describe('KeyedSignal', () => {
  it('on: calls back once, on its key only; what it returns takes the callback back, safely after it ran', () => {
    const s = new KeyedSignal<number>()
    const calls: string[] = []
    const offA = s.on(1, () => calls.push('a'))
    s.on(1, () => calls.push('b'))
    const offC = s.on(2, () => calls.push('c'))
    expect(s.size).toBe(2)
    offC()
    expect(s.size).toBe(1) // a key with no waiter left is dropped
    s.fire(2)
    s.fire(1)
    expect(calls).toEqual(['a', 'b'])
    s.fire(1) // one-shot: nothing waits any more
    expect(calls).toEqual(['a', 'b'])
    offA() // after it ran: no effect
    expect(s.size).toBe(0)
  })

  it('a callback that waits on its own key again is called at the next fire, not this one; an old remover does not take the new waiter back', () => {
    const s = new KeyedSignal<string>()
    let n = 0
    const again = (): void => { n++; s.on('k', again) }
    const off = s.on('k', again)
    s.fire('k')
    expect(n).toBe(1)
    off()
    s.fire('k')
    expect(n).toBe(2)
  })

  it('once and on share the waiters; fireWhere and fireAll pick keys', () => {
    const s = new KeyedSignal<number>()
    const seen: number[] = []
    for (const k of [1, 2, 3, 4]) s.on(k, () => seen.push(k))
    let onceFired = 0
    const sub = s.once(5).subscribe({ next: () => onceFired++ })
    s.fireWhere((k) => k % 2 === 0)
    expect(seen).toEqual([2, 4])
    s.fireAll()
    expect(seen).toEqual([2, 4, 1, 3])
    expect(onceFired).toBe(1)
    expect(sub.closed).toBe(true)
    const late = s.once(6).subscribe()
    late.unsubscribe()
    expect(s.size).toBe(0)
  })

  it('taking back one of several waiters of a key leaves the others, called in the order they came', () => {
    const s = new KeyedSignal<string>()
    const calls: string[] = []
    s.on('k', () => calls.push('a'))
    const offB = s.on('k', () => calls.push('b'))
    s.on('k', () => calls.push('c'))
    const offD = s.on('k', () => calls.push('d'))
    offB()
    offB() // twice: no effect
    offD()
    expect(s.size).toBe(1)
    s.fire('k')
    expect(calls).toEqual(['a', 'c'])
    expect(s.size).toBe(0)
    // the last of several taken back: the key goes
    const offE = s.on('j', () => calls.push('e'))
    const offF = s.on('j', () => calls.push('f'))
    offE(); offF()
    expect(s.size).toBe(0)
    s.fire('j')
    expect(calls).toEqual(['a', 'c'])
  })

  it('a waiter taken back while its key fires is still called (the key\'s waiters as they were when it fired)', () => {
    const s = new KeyedSignal<number>()
    const calls: string[] = []
    let offB = (): void => {}
    s.on(1, () => { calls.push('a'); offB() })
    offB = s.on(1, () => calls.push('b'))
    s.fire(1)
    expect(calls).toEqual(['a', 'b'])
  })
})
