import { LogThrottle } from '../../src/tracker/server'

describe('LogThrottle', () => {
  it('lets at most perSecond lines of a kind through each second; the next one through says how many were held back', () => {
    const t = new LogThrottle(2)
    const got = Array.from({ length: 5 }, (_, i) => t.take('malformed', 1000 + i))
    expect(got).toEqual([{ suppressed: 0 }, { suppressed: 0 }, null, null, null])
    // another kind has its own allowance
    expect(t.take('bad_token', 1004)).toEqual({ suppressed: 0 })
    // the next second: through again, with the count of those held back
    expect(t.take('malformed', 2000)).toEqual({ suppressed: 3 })
    expect(t.take('malformed', 2001)).toEqual({ suppressed: 0 })
    expect(t.take('malformed', 2002)).toBeNull()
  })
})
