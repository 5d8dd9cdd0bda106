import { SourceLimiter } from '../../src/tracker/sourceLimiter'

describe('SourceLimiter', () => {
  it('lets a burst through, then the rate', () => {
    const l = new SourceLimiter(10, 5)
    const first = Array.from({ length: 8 }, () => l.allow('10.0.0.1', 0))
    expect(first).toEqual([true, true, true, true, true, false, false, false])
    expect(l.allow('10.0.0.1', 100)).toBe(true) // 10/s: one more after 100 ms
    expect(l.allow('10.0.0.1', 100)).toBe(false)
  })

  it('keeps sources apart', () => {
    const l = new SourceLimiter(1, 1)
    expect(l.allow('a', 0)).toBe(true)
    expect(l.allow('a', 0)).toBe(false)
    expect(l.allow('b', 0)).toBe(true)
  })

  it('tracks at most maxSources addresses', () => {
    const l = new SourceLimiter(1, 1, 100)
    for (let i = 0; i < 1000; i++) l.allow(`10.0.${i >> 8}.${i & 255}`, i)
    expect(l.tracked).toBe(100)
  })
})
