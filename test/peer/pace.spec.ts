import { PaceMeter } from '../../src/peer/pace'
import { STARVED_SHARE, STARVED_WINDOW_MS } from '../../src/limits'

/** Land `n` pieces evenly over [from, to). */
const landEvenly = (m: PaceMeter, from: number, to: number, n: number): void => {
  for (let k = 0; k < n; k++) m.land(from + (to - from) * k / n)
}

describe('PaceMeter (is a download starved?)', () => {
  it('uses the shared limits by default: a window of 200 ms, 70 % of the average pace', () => {
    expect([STARVED_WINDOW_MS, STARVED_SHARE]).toEqual([200, 0.7])
  })

  it('is never starved before its first piece, nor in the two windows after it', () => {
    const m = new PaceMeter(200, 0.5)
    expect(m.starved(10_000)).toBe(false)
    m.land(1000)
    expect(m.starved(1000)).toBe(false)
    expect(m.starved(1399)).toBe(false) // nothing since, but too early to say
    expect(m.starved(1400)).toBe(true)
  })

  it('a steady pace is not starved; below half of the average over the last window it is; back to pace it is not', () => {
    const m = new PaceMeter(200, 0.5)
    landEvenly(m, 0, 1000, 100) // 10 per 100 ms
    expect(m.starved(1000)).toBe(false)
    // 1000–1200: 4 pieces where 20 would keep pace (half: 10, on an average just under 10 per 100 ms)
    landEvenly(m, 1000, 1200, 4)
    expect(m.starved(1200)).toBe(true)
    // the pace comes back: starved no more once the recent window holds enough
    landEvenly(m, 1200, 1400, 30)
    expect(m.starved(1400)).toBe(false)
  })

  it('counts just under the share as starved and at the share as not, over the slots the window covers', () => {
    // slots of 50 ms; at 1000 the window is the slot under way [1000, 1050) and the three before:
    // it covers [850, 1000], 150 ms
    const withRecent = (n: number): PaceMeter => {
      const m = new PaceMeter(200, 0.5)
      landEvenly(m, 0, 800, 80)
      for (let k = 0; k < n; k++) m.land(900)
      return m
    }
    // half the average pace over 150 ms: 0.5 × (80 + n) / 1000 × 150
    expect(withRecent(6).starved(1000)).toBe(true) // 6 < 6.45
    expect(withRecent(7).starved(1000)).toBe(false) // 7 ≥ 6.525
    // a piece that landed at 849 is out of the window
    const m = withRecent(0)
    for (let k = 0; k < 7; k++) m.land(849)
    expect(m.starved(1000)).toBe(true)
  })

  it('keeps constant memory at any rate: 10,000 pieces in a window are all counted', () => {
    const m = new PaceMeter(200, 0.5)
    landEvenly(m, 0, 1000, 50_000) // 5,000 per 100 ms
    expect(m.starved(1000)).toBe(false)
    // a fast download that slows to a quarter of its pace is starved
    landEvenly(m, 1000, 1200, 2_500)
    expect(m.starved(1200)).toBe(true)
  })

  it('forgets slots older than the window (a slot reused after a gap starts from zero)', () => {
    const m = new PaceMeter(200, 0.5)
    landEvenly(m, 0, 400, 40)
    // a long gap, then a burst in one slot: the old counts of that slot do not add to it
    m.land(2000)
    expect(m.starved(2000)).toBe(true) // 1 piece in the window; half the average over the 150 ms it covers is 0.5 × 41 / 2000 × 150 ≈ 1.5
  })
})
