import { hasBit, PiecePicker, setBit } from '../../src/peer/picker'
import { seeded } from '../helpers/random'

/** A bitfield of `pieces` bits with `held` set (MSB first, as on the wire). */
function bits (pieces: number, held: number[]): Uint8Array {
  const bf = new Uint8Array(Math.ceil(pieces / 8))
  for (const i of held) setBit(bf, i)
  return bf
}


/** Calls `next(id)` until it says null; the pieces handed out, in order. */
function drain (p: PiecePicker, id: string): number[] {
  const out: number[] = []
  for (let n = 0; n < 1000; n++) {
    const i = p.next(id)
    if (i === null) return out
    out.push(i)
  }
  throw new Error(`next('${id}') never ran dry`)
}

/** `n` calls of `next(id)`, each of which must hand out a piece. */
function takeN (p: PiecePicker, id: string, n: number): number[] {
  return Array.from({ length: n }, () => {
    const i = p.next(id)
    if (i === null) throw new Error(`next('${id}') ran dry`)
    return i
  })
}

describe('hasBit / setBit', () => {
  it('address bits MSB first, across byte boundaries', () => {
    const bf = new Uint8Array(2)
    setBit(bf, 0); setBit(bf, 7); setBit(bf, 9)
    expect([...bf]).toEqual([0x81, 0x40])
    expect([0, 7, 9].every((i) => hasBit(bf, i))).toBe(true)
    expect([1, 2, 3, 4, 5, 6, 8, 10, 15].some((i) => hasBit(bf, i))).toBe(false)
  })

  it('setBit is idempotent and leaves the other bits alone', () => {
    const bf = Uint8Array.of(0x0f)
    setBit(bf, 4); setBit(bf, 4); setBit(bf, 0)
    expect([...bf]).toEqual([0x8f])
  })
})

describe('PiecePicker', () => {
  describe('rarest first', () => {
    // 4 pieces; availability: 0 → 3, 1 → 3, 2 → 2, 3 → 1
    const three = (random?: () => number): PiecePicker => {
      const p = new PiecePicker(4, { random })
      p.setSource('s1', bits(4, [0, 1, 2, 3]))
      p.setSource('s2', bits(4, [0, 1, 2]))
      p.setSource('s3', bits(4, [0, 1]))
      return p
    }

    it('counts how many sources hold each piece', () => {
      const p = three()
      expect([0, 1, 2, 3].map((i) => p.availabilityOf(i))).toEqual([3, 3, 2, 1])
      expect(p.sources).toBe(3)
    })

    it('hands a source the least available piece among those it holds', () => {
      const p = three(() => 0.5)
      expect(p.next('s1')).toBe(3) // held by s1 only
      expect(p.next('s1')).toBe(2) // the rarest of what is left
      expect(p.next('s2')).toBe(0) // 2 is taken; 0 and 1 tie at 3
      expect(p.next('s3')).toBe(1)
    })

    it('asks for the rarest piece the asking source holds, not the rarest overall', () => {
      const p = three(() => 0.5)
      // piece 3 is the rarest, but s2 does not hold it: its rarest is 2
      expect(p.next('s2')).toBe(2)
      // s3 holds 0 and 1 only
      expect([0, 1]).toContain(p.next('s3'))
    })

    it('breaks ties with the injected random source (reservoir pick): a low draw takes the last tie, a high one keeps the first', () => {
      // (a second source, holding nothing yet: with a complete holder alone, pieces go in order)
      const low = new PiecePicker(8, { random: () => 0 })
      low.setSource('a', null); low.setSource('b', bits(8, []))
      expect(low.next('a')).toBe(7)
      const high = new PiecePicker(8, { random: () => 0.99 })
      high.setSource('a', null); high.setSource('b', bits(8, []))
      expect(high.next('a')).toBe(0)
    })

    it('spreads first picks across the ties with different seeds, and repeats them with the same seed', () => {
      const firstPick = (seed: number): number | null => {
        const p = new PiecePicker(16, { random: seeded(seed) })
        p.setSource('a', null); p.setSource('b', bits(16, []))
        return p.next('a')
      }
      const picks = Array.from({ length: 40 }, (_, s) => firstPick(s + 1))
      expect(new Set(picks).size).toBeGreaterThan(4)
      expect(Array.from({ length: 40 }, (_, s) => firstPick(s + 1))).toEqual(picks)
    })

    it('picks each tied piece about equally often (uniform reservoir)', () => {
      const random = seeded(42)
      const counts = new Array<number>(4).fill(0)
      for (let n = 0; n < 4000; n++) {
        const p = new PiecePicker(4, { random })
        p.setSource('a', null); p.setSource('b', bits(4, []))
        counts[p.next('a') as number]++
      }
      for (const c of counts) expect(c).toBeGreaterThan(850) // 1000 expected each
      for (const c of counts) expect(c).toBeLessThan(1150)
    })

    it('with one complete holder as its only source, hands pieces out in file order; ties are random again once another source is known', () => {
      const p = new PiecePicker(12, { random: seeded(7) })
      p.setSource('seed', null)
      expect(takeN(p, 'seed', 4)).toEqual([0, 1, 2, 3])
      p.release('seed', 1) // a piece given back is the first missing one again
      expect(p.next('seed')).toBe(1)
      p.setSource('peer', bits(12, [])) // another leecher: copies to spread
      const rest = drain(p, 'seed')
      expect([...rest].sort((a, b) => a - b)).toEqual([4, 5, 6, 7, 8, 9, 10, 11])
      expect(rest).not.toEqual([4, 5, 6, 7, 8, 9, 10, 11]) // not in order
      // alone with the holder again: in order again
      const q = new PiecePicker(6, { random: seeded(7) })
      q.setSource('seed', null); q.setSource('peer', bits(6, [])); q.drop('peer')
      expect(drain(q, 'seed')).toEqual([0, 1, 2, 3, 4, 5])
    })

    it('hands every missing piece out at most once across sources before the endgame', () => {
      const p = new PiecePicker(20, { random: seeded(7) })
      for (const id of ['a', 'b', 'c']) p.setSource(id, null)
      const handed: number[] = []
      for (let n = 0; n < 20; n++) handed.push(p.next(['a', 'b', 'c'][n % 3]) as number)
      expect([...handed].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i))
    })

    it('with maxDuplicates 1 never hands a piece out twice, whoever asks', () => {
      const p = new PiecePicker(20, { random: seeded(3), maxDuplicates: 1 })
      for (const id of ['a', 'b', 'c']) p.setSource(id, null)
      const handed = [...takeN(p, 'a', 7), ...drain(p, 'b'), ...drain(p, 'c'), ...drain(p, 'a')]
      expect(handed).toHaveLength(20)
      expect(new Set(handed).size).toBe(20)
    })

    it('prefers a rarer piece once a source has told us it got a common one', () => {
      const p = new PiecePicker(3, { random: () => 0.99 })
      p.setSource('a', bits(3, [0, 1, 2]))
      p.setSource('b', bits(3, [0, 1]))
      p.setSource('c', bits(3, [2]))
      // all three tie at 2; another source getting piece 2 and 1 leaves 0 the rarest
      p.setSource('d', bits(3, []))
      p.sourceGot('d', 2)
      p.sourceGot('d', 1)
      expect(p.next('a')).toBe(0)
    })
  })

  describe('what a source holds', () => {
    it('only hands a source pieces its bitfield holds', () => {
      const p = new PiecePicker(10, { random: seeded(1), maxDuplicates: 1 })
      p.setSource('a', bits(10, [1, 4, 9]))
      expect(drain(p, 'a').sort((x, y) => x - y)).toEqual([1, 4, 9])
    })

    it('gives a source with nothing (of what is missing) nothing, and an unknown source nothing', () => {
      const p = new PiecePicker(4)
      p.setSource('a', bits(4, []))
      expect(p.next('a')).toBeNull()
      expect(p.next('stranger')).toBeNull()
      expect(p.useful('stranger')).toBe(false)
      expect(p.holds('stranger', 0)).toBe(false)
    })

    it('a source with no bitfield holds everything and counts once per piece', () => {
      const p = new PiecePicker(3)
      p.setSource('seed', null)
      p.setSource('x', bits(3, [1]))
      expect([0, 1, 2].map((i) => p.availabilityOf(i))).toEqual([1, 2, 1])
      expect([0, 1, 2].every((i) => p.holds('seed', i))).toBe(true)
    })
  })

  describe('setSource again', () => {
    it('replaces the bitfield and the availability counts', () => {
      const p = new PiecePicker(4)
      p.setSource('a', bits(4, [0, 1]))
      p.setSource('b', bits(4, [1]))
      expect([0, 1, 2, 3].map((i) => p.availabilityOf(i))).toEqual([1, 2, 0, 0])
      p.setSource('a', bits(4, [2, 3]))
      expect([0, 1, 2, 3].map((i) => p.availabilityOf(i))).toEqual([0, 1, 1, 1])
      expect(p.holds('a', 0)).toBe(false)
      expect(p.holds('a', 3)).toBe(true)
      expect(p.sources).toBe(2)
    })

    it('switches between a bitfield and holding everything without double counting', () => {
      const p = new PiecePicker(3)
      p.setSource('a', bits(3, [0]))
      p.setSource('a', null)
      expect([0, 1, 2].map((i) => p.availabilityOf(i))).toEqual([1, 1, 1])
      p.setSource('a', null)
      expect([0, 1, 2].map((i) => p.availabilityOf(i))).toEqual([1, 1, 1])
      p.setSource('a', bits(3, [2]))
      expect([0, 1, 2].map((i) => p.availabilityOf(i))).toEqual([0, 0, 1])
    })

    it('hands out only pieces of the new bitfield, and keeps what the source already fetches', () => {
      const p = new PiecePicker(4, { maxDuplicates: 1 })
      p.setSource('a', bits(4, [0]))
      expect(p.next('a')).toBe(0)
      p.setSource('a', bits(4, [0, 3]))
      expect(drain(p, 'a')).toEqual([3])
      // piece 0 is still its own: dropping it gives both back
      expect(p.drop('a').sort()).toEqual([0, 3])
    })
  })

  describe('addHave (a bitfield that came with a piece)', () => {
    it('counts only the new pieces, keeps the old ones and what the source is fetching', () => {
      const p = new PiecePicker(10)
      p.setSource('a', bits(10, [1]), bits(10, [2]))
      expect([p.availabilityOf(1), p.availabilityOf(2), p.availabilityOf(9)]).toEqual([1, 1, 0])
      p.addHave('a', bits(10, [2, 9]))
      // 1 is not forgotten (pieces are never lost), 2 was counted as pending already, 9 is new
      expect([p.availabilityOf(1), p.availabilityOf(2), p.availabilityOf(9)]).toEqual([1, 1, 1])
      expect([p.holds('a', 1), p.holds('a', 2), p.holds('a', 9)]).toEqual([true, true, true])
      p.addHave('a', bits(10, [9]))
      expect(p.availabilityOf(9)).toBe(1)
    })

    it('changes nothing for a source that holds everything or that is unknown', () => {
      const p = new PiecePicker(10)
      p.setSource('seed', null)
      p.addHave('seed', bits(10, [3]))
      p.addHave('stranger', bits(10, [3]))
      expect(p.availabilityOf(3)).toBe(1)
      expect(p.sources).toBe(1)
    })
  })

  describe('sourceGot', () => {
    it('raises availability once per piece and lets the source be asked for it', () => {
      const p = new PiecePicker(4)
      p.setSource('a', bits(4, []))
      p.sourceGot('a', 3)
      expect(p.availabilityOf(3)).toBe(1)
      p.sourceGot('a', 3)
      expect(p.availabilityOf(3)).toBe(1)
      expect(p.holds('a', 3)).toBe(true)
      expect(p.next('a')).toBe(3)
    })

    it('changes nothing for a source that holds everything or that is unknown', () => {
      const p = new PiecePicker(2)
      p.setSource('seed', null)
      p.sourceGot('seed', 0)
      p.sourceGot('stranger', 1)
      expect([p.availabilityOf(0), p.availabilityOf(1)]).toEqual([1, 1])
      expect(p.sources).toBe(1)
    })

    it('a later setSource forgets the piece it reported along with the old bitfield', () => {
      const p = new PiecePicker(2)
      p.setSource('a', bits(2, []))
      p.sourceGot('a', 1)
      p.setSource('a', bits(2, [0]))
      expect([p.availabilityOf(0), p.availabilityOf(1)]).toEqual([1, 0])
    })
  })

  describe('done', () => {
    it('marks the piece done and tracks complete / remaining / isDone', () => {
      const p = new PiecePicker(3, { maxDuplicates: 1 })
      p.setSource('a', null)
      expect([p.complete, p.remaining]).toEqual([false, 3])
      const got = drain(p, 'a')
      expect(got).toHaveLength(3)
      expect(p.done('a', got[0])).toEqual([])
      expect([p.complete, p.remaining, p.isDone(got[0]), p.isDone(got[1])]).toEqual([false, 2, true, false])
      p.done('a', got[1]); p.done('a', got[2])
      expect([p.complete, p.remaining]).toEqual([true, 0])
      expect(p.useful('a')).toBe(false)
      expect(p.next('a')).toBeNull()
    })

    it('returns the other sources fetching the same piece (endgame duplicates), and counts the piece once', () => {
      const p = new PiecePicker(1, { maxDuplicates: 3 })
      for (const id of ['a', 'b', 'c']) p.setSource(id, null)
      expect([p.next('a'), p.next('b'), p.next('c')]).toEqual([0, 0, 0])
      expect(p.done('b', 0).sort()).toEqual(['a', 'c'])
      // a late copy landing too changes nothing
      expect(p.done('a', 0)).toEqual([])
      expect([p.complete, p.remaining]).toEqual([true, 0])
      // the losers no longer hold the piece in flight: dropping them gives nothing back
      expect(p.drop('c')).toEqual([])
    })

    it('reflects done pieces in doneBits, MSB first', () => {
      const p = new PiecePicker(10)
      expect(p.doneBits).toHaveLength(2)
      p.setSource('a', null)
      p.done('a', 0); p.done('a', 7); p.done('a', 9)
      expect([...p.doneBits]).toEqual([0x81, 0x40])
      for (let i = 0; i < 10; i++) expect(hasBit(p.doneBits, i)).toBe(p.isDone(i))
    })
  })

  describe('endgame', () => {
    it('once nothing is missing, an idle source gets a piece in flight elsewhere that it holds', () => {
      const p = new PiecePicker(2)
      p.setSource('a', null)
      p.setSource('b', bits(2, [1]))
      expect(takeN(p, 'a', 2).sort()).toEqual([0, 1])
      expect(p.next('b')).toBe(1)
      expect(p.next('b')).toBeNull() // it does not hold 0, and already fetches 1
    })

    it('never gives a source a piece it already fetches', () => {
      const p = new PiecePicker(3)
      p.setSource('a', null)
      p.setSource('b', null)
      const mine = takeN(p, 'a', 3)
      const dup = drain(p, 'b')
      expect(dup.sort()).toEqual([0, 1, 2])
      expect(new Set(dup).size).toBe(dup.length)
      expect(p.next('a')).toBeNull()
      expect(mine).toHaveLength(3)
    })

    it('keeps at most maxDuplicates copies of a piece in flight (default 2)', () => {
      const p = new PiecePicker(1)
      for (const id of ['a', 'b', 'c']) p.setSource(id, null)
      expect([p.next('a'), p.next('b'), p.next('c')]).toEqual([0, 0, null])
      const q = new PiecePicker(1, { maxDuplicates: 3 })
      for (const id of ['a', 'b', 'c', 'd']) q.setSource(id, null)
      expect([q.next('a'), q.next('b'), q.next('c'), q.next('d')]).toEqual([0, 0, 0, null])
    })

    it('duplicates the piece with the fewest copies in flight first', () => {
      const p = new PiecePicker(2, { maxDuplicates: 3 })
      for (const id of ['a', 'b', 'c']) p.setSource(id, null)
      p.setSource('d', bits(2, [0]))
      expect(takeN(p, 'a', 2).sort()).toEqual([0, 1])
      expect(p.next('d')).toBe(0) // 0 now has two copies, 1 has one
      expect(p.next('b')).toBe(1)
      // both at two copies: c may take each once, then nothing (three copies of each)
      expect(drain(p, 'c').sort()).toEqual([0, 1])
      expect(p.next('d')).toBeNull()
    })

    it('prefers a missing piece over a duplicate', () => {
      const p = new PiecePicker(2)
      p.setSource('a', null)
      p.setSource('b', null)
      const first = p.next('a')
      expect(p.next('b')).toBe(first === 0 ? 1 : 0)
    })
  })

  describe('release', () => {
    it('puts a piece back to missing when nobody else fetches it', () => {
      const p = new PiecePicker(1)
      p.setSource('a', null)
      p.setSource('b', bits(1, [0]))
      expect(p.next('a')).toBe(0)
      p.release('a', 0)
      expect(p.isDone(0)).toBe(false)
      // it is handed out again, as a missing piece, to either source
      expect(p.next('b')).toBe(0)
      expect(p.next('a')).toBe(0) // and, now in flight with b, as an endgame copy
    })

    it('keeps the piece in flight while another source fetches it', () => {
      // piece 0 in flight with a, b and c; piece 1 with d only
      const p = new PiecePicker(2, { maxDuplicates: 3 })
      for (const id of ['a', 'b', 'c']) p.setSource(id, bits(2, [0]))
      p.setSource('d', bits(2, [1]))
      p.setSource('x', null)
      expect([p.next('a'), p.next('d'), p.next('b'), p.next('c')]).toEqual([0, 1, 0, 0])
      p.release('a', 0)
      // were 0 missing again, x would be handed it as missing; in flight (two copies) it gets 1 (one copy)
      expect(p.next('x')).toBe(1)
      // a no longer counts among 0's fetchers
      expect(p.done('b', 0)).toEqual(['c'])
    })

    it('of a piece already done changes nothing', () => {
      const p = new PiecePicker(1)
      p.setSource('a', null)
      p.next('a')
      p.done('a', 0)
      p.release('a', 0)
      expect([p.complete, p.isDone(0), p.next('a')]).toEqual([true, true, null])
    })
  })

  describe('drop', () => {
    it("returns the source's in-flight pieces, gives them back, removes its availability, and gives it no more", () => {
      const p = new PiecePicker(4, { maxDuplicates: 1 })
      p.setSource('a', bits(4, [0, 1, 2]))
      p.setSource('b', bits(4, [0, 1, 2, 3]))
      const a = drain(p, 'a')
      expect(a.sort()).toEqual([0, 1, 2])
      expect(p.drop('a').sort()).toEqual([0, 1, 2])
      expect([0, 1, 2, 3].map((i) => p.availabilityOf(i))).toEqual([1, 1, 1, 1])
      expect(p.sources).toBe(1)
      expect(p.next('a')).toBeNull()
      expect(p.useful('a')).toBe(false)
      expect(drain(p, 'b').sort()).toEqual([0, 1, 2, 3])
    })

    it('leaves a piece in flight with another source that fetches it too', () => {
      const p = new PiecePicker(1)
      p.setSource('a', null)
      p.setSource('b', null)
      p.setSource('c', null)
      expect([p.next('a'), p.next('b')]).toEqual([0, 0])
      expect(p.drop('a')).toEqual([0])
      expect(p.done('b', 0)).toEqual([]) // a is gone from the fetchers
      expect(p.complete).toBe(true)
    })

    it('of a seed removes it from every piece\'s availability', () => {
      const p = new PiecePicker(2)
      p.setSource('s', null)
      p.drop('s')
      expect([p.availabilityOf(0), p.availabilityOf(1), p.sources]).toEqual([0, 0, 0])
      expect(p.drop('s')).toEqual([]) // twice is harmless
    })
  })

  describe('useful', () => {
    it('says whether a source holds a piece that is not done yet (missing or in flight)', () => {
      const p = new PiecePicker(3)
      p.setSource('a', bits(3, [0]))
      p.setSource('b', bits(3, [1, 2]))
      expect([p.useful('a'), p.useful('b')]).toEqual([true, true])
      p.markDone(0)
      expect(p.useful('a')).toBe(false)
      expect(p.next('b')).not.toBeNull()
      expect(p.useful('b')).toBe(true)
      p.markDone(1); p.markDone(2)
      expect(p.useful('b')).toBe(false)
    })
  })

  describe('markDone (resume)', () => {
    it('marks a piece done before any source is asked; never handed out; idempotent', () => {
      const p = new PiecePicker(4, { maxDuplicates: 1 })
      p.markDone(1); p.markDone(1); p.markDone(3)
      expect([p.remaining, p.complete, p.isDone(1), p.isDone(3)]).toEqual([2, false, true, true])
      expect([...p.doneBits]).toEqual([0x50])
      p.setSource('a', null)
      expect(drain(p, 'a').sort()).toEqual([0, 2])
    })

    it('every piece marked: complete at once, nothing to hand out', () => {
      const p = new PiecePicker(3)
      for (const i of [0, 1, 2]) p.markDone(i)
      p.setSource('a', null)
      expect([p.complete, p.remaining, p.next('a'), p.useful('a')]).toEqual([true, 0, null, false])
    })
  })

  it('with zero pieces is complete at once', () => {
    const p = new PiecePicker(0)
    expect([p.complete, p.remaining, p.doneBits.length]).toEqual([true, 0, 0])
    p.setSource('a', null)
    expect([p.next('a'), p.useful('a')]).toEqual([null, false])
  })

  it('wantBits: the missing pieces, or in the endgame those not done, through any sequence of picks, releases, drops and landings', () => {
    const random = seeded(7)
    for (const pieces of [1, 7, 8, 13, 64, 77]) {
      const p = new PiecePicker(pieces, { random })
      const ids = ['a', 'b', 'c', 'd']
      const all = Array.from({ length: pieces }, (_, i) => i)
      for (const id of ids) p.setSource(id, bits(pieces, all.filter(() => random() < 0.7)))
      const reference = (): Uint8Array => {
        const flying = p.inFlightBits()
        const endgame = p.missing === 0
        return bits(pieces, all.filter((i) => !p.isDone(i) && (endgame || !hasBit(flying, i))))
      }
      let endgames = 0
      for (let step = 0; step < 400 && !p.complete; step++) {
        const id = ids[Math.floor(random() * ids.length)]
        const r = random()
        if (r < 0.45) p.next(id)
        else if (r < 0.65) { const i = Math.floor(random() * pieces); p.release(id, i, random() < 0.1) } else if (r < 0.9) {
          const i = Math.floor(random() * pieces)
          if (hasBit(p.inFlightBits(), i)) p.done(id, i)
        } else if (r < 0.95) { p.drop(id); p.setSource(id, bits(pieces, all)) } else p.markDone(Math.floor(random() * pieces))
        if (p.missing === 0) endgames++
        expect([pieces, step, [...p.wantBits()]]).toEqual([pieces, step, [...reference()]])
      }
      if (pieces > 1) expect(endgames).toBeGreaterThan(0)
    }
  })
})
