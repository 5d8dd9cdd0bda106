/** Bit i (MSB first) of a bitfield. */
export function hasBit (bf: Uint8Array, i: number): boolean {
  return (bf[i >> 3] & (0x80 >> (i & 7))) !== 0
}

export function setBit (bf: Uint8Array, i: number): void {
  bf[i >> 3] |= 0x80 >> (i & 7)
}

export function clearBit (bf: Uint8Array, i: number): void {
  bf[i >> 3] &= ~(0x80 >> (i & 7))
}

export interface PickerOptions {
  /** Random source in [0, 1) for tie-breaks: injectable so simulations are reproducible. */
  random?: () => number
  /** Most copies of one piece in flight at once in the endgame. */
  maxDuplicates?: number
}

const MISSING = 0
const IN_FLIGHT = 1
const DONE = 2

/**
 * Which piece a source should fetch next. Pure bookkeeping, no I/O and no time.
 *
 * - Rarest first: among the missing pieces a source holds, the one the fewest known sources
 *   hold, ties broken at random, so copies spread and no piece ends up held by one peer only
 *   (with a single source that holds everything, in file order: there is nothing to spread).
 * - Endgame: once no piece is missing (each is done or in flight), an idle source may fetch a
 *   piece already in flight elsewhere (at most `maxDuplicates` copies); the first copy to land
 *   wins and the flow cancels the others.
 * - A source that fails gives its in-flight pieces back.
 */
export class PiecePicker {
  private readonly state: Uint8Array
  private readonly owners = new Map<number, Set<string>>()
  private readonly has = new Map<string, Uint8Array | null>() // null: holds everything
  private readonly inFlight = new Map<string, Set<number>>()
  private readonly pendingOf = new Map<string, Uint8Array>()
  /** Pieces a source declined for now (a seeder that already sent them): not asked of it until its next probe. */
  private readonly declined = new Map<string, Set<number>>()
  /**
   * Pieces each source declined so since it became a source (kept across its probes), and per piece
   * how many sources did: they are not holders that will give it (see `askCopies`).
   */
  private readonly seededBy = new Map<string, Set<number>>()
  private readonly seededCount: Uint16Array
  /** Pieces a source sent bad: never asked of it again. */
  private readonly refused = new Map<string, Set<number>>()
  /** How many known sources hold each piece (sources holding everything are counted apart). */
  private readonly availability: Uint16Array
  private seeds = 0
  private doneCount = 0
  private missingCount: number
  readonly doneBits: Uint8Array
  /** Pieces MISSING (neither done nor in flight), kept as the state changes (a watch sends them). */
  private readonly missingBits: Uint8Array
  private readonly random: () => number
  private readonly maxDuplicates: number

  constructor (readonly pieces: number, opts: PickerOptions = {}) {
    this.state = new Uint8Array(pieces)
    this.availability = new Uint16Array(pieces)
    this.seededCount = new Uint16Array(pieces)
    this.doneBits = new Uint8Array(Math.ceil(pieces / 8))
    this.missingBits = new Uint8Array(Math.ceil(pieces / 8))
    for (let i = 0; i < pieces; i++) setBit(this.missingBits, i)
    this.missingCount = pieces
    this.random = opts.random ?? Math.random
    this.maxDuplicates = opts.maxDuplicates ?? 2
  }

  /**
   * How many known holders of piece `i` may give it, for a request's `copies` (at least 1): those
   * that declined it as sent already (SEEDED) do not count. A seeder declines a piece it sent
   * elsewhere while the asker names other holders; with two seeders each naming the other, every
   * holder declined it for good and a resumed get failed with exit 6.
   */
  askCopies (i: number): number { return Math.max(1, this.availabilityOf(i) - this.seededCount[i]) }
  get remaining (): number { return this.pieces - this.doneCount }
  /** Pieces neither done nor in flight (0: the endgame). */
  get missing (): number { return this.missingCount }
  get complete (): boolean { return this.doneCount === this.pieces }
  get sources (): number { return this.has.size }
  isDone (index: number): boolean { return this.state[index] === DONE }

  /**
   * A source and the pieces it holds (null: all of them), and those it is fetching (`pending`:
   * they count as held for rarity, not for asking). Called again, it replaces both.
   */
  setSource (id: string, bitfield: Uint8Array | null, pending?: Uint8Array, declined?: Uint8Array): void {
    this.forget(id)
    this.declined.delete(id)
    if (declined !== undefined) {
      const d = new Set<number>()
      this.eachBit(declined, undefined, (i) => d.add(i))
      this.declined.set(id, d)
    }
    this.has.set(id, bitfield)
    if (!this.inFlight.has(id)) this.inFlight.set(id, new Set())
    if (bitfield === null) { this.seeds++; return }
    const avail = this.availability
    this.eachBit(bitfield, pending, (i) => { avail[i]++ })
    if (pending !== undefined) this.pendingOf.set(id, pending)
  }

  /** f(i) for every piece set in `a` or `b`, a byte at a time (probes refresh bitfields often: this is a hot path). */
  private eachBit (a: Uint8Array, b: Uint8Array | undefined, f: (i: number) => void): void {
    const bytes = Math.ceil(this.pieces / 8)
    for (let j = 0; j < bytes; j++) {
      const x = (a[j] ?? 0) | (b === undefined ? 0 : b[j] ?? 0)
      if (x === 0) continue
      const base = j << 3
      for (let k = 0; k < 8; k++) if ((x & (0x80 >> k)) !== 0 && base + k < this.pieces) f(base + k)
    }
  }

  /** The pieces this download is fetching now, as a bitfield (for `have` replies). */
  inFlightBits (): Uint8Array {
    const bf = new Uint8Array(Math.ceil(this.pieces / 8))
    for (const i of this.owners.keys()) setBit(bf, i)
    return bf
  }

  /**
   * The pieces worth news from a source, as a bitfield (a watch's `lacks`): those missing, or,
   * in the endgame, those not done.
   */
  wantBits (): Uint8Array {
    if (this.missingCount > 0) return this.missingBits.slice()
    // the endgame: every piece not done
    const bf = new Uint8Array(this.doneBits.length)
    for (let j = 0; j < bf.length; j++) bf[j] = ~this.doneBits[j] & 0xff
    const tail = this.pieces & 7
    if (tail !== 0) bf[bf.length - 1] &= (0xff << (8 - tail)) & 0xff
    return bf
  }

  /** A source now holds one more piece (it told us, or it fetched it from us). */
  sourceGot (id: string, index: number): void {
    const bf = this.has.get(id)
    if (bf === undefined || bf === null || hasBit(bf, index)) return
    setBit(bf, index)
    const pending = this.pendingOf.get(id)
    if (pending === undefined || !hasBit(pending, index)) this.availability[index]++
  }

  /** A source holds (at least) the pieces in `bitfield` now (it said so with a piece): the new ones count, the rest stays. */
  addHave (id: string, bitfield: Uint8Array): void {
    const bf = this.has.get(id)
    if (bf === undefined || bf === null) return
    const bytes = Math.ceil(this.pieces / 8)
    for (let j = 0; j < bytes; j++) {
      const fresh = (bitfield[j] ?? 0) & ~(bf[j] ?? 0)
      if (fresh === 0) continue
      for (let k = 0; k < 8; k++) if ((fresh & (0x80 >> k)) !== 0 && (j << 3) + k < this.pieces) this.sourceGot(id, (j << 3) + k)
    }
  }

  private forget (id: string): void {
    const bf = this.has.get(id)
    if (bf === undefined) return
    const pending = this.pendingOf.get(id)
    const avail = this.availability
    if (bf === null) this.seeds--
    else this.eachBit(bf, pending, (i) => { avail[i]-- })
    this.has.delete(id)
    this.pendingOf.delete(id)
  }

  holds (id: string, index: number): boolean {
    const bf = this.has.get(id)
    return bf !== undefined && (bf === null || hasBit(bf, index)) && this.refused.get(id)?.has(index) !== true && this.declined.get(id)?.has(index) !== true
  }

  /** `id` declined piece `index` for now: it goes back (unless others fetch it) and is not asked of `id` until `setSource(id)` again. */
  decline (id: string, index: number): void {
    if (!this.has.has(id)) return // (a late answer from a source already dropped)
    let d = this.declined.get(id)
    if (d === undefined) { d = new Set(); this.declined.set(id, d) }
    d.add(index)
    let seeded = this.seededBy.get(id)
    if (seeded === undefined) { seeded = new Set(); this.seededBy.set(id, seeded) }
    if (!seeded.has(index)) { seeded.add(index); this.seededCount[index]++ }
    this.release(id, index)
  }

  /** Known sources holding piece `index`. */
  availabilityOf (index: number): number { return this.seeds + this.availability[index] }

  /** A piece verified before any source was asked (resume). */
  markDone (index: number): void {
    if (this.state[index] === DONE) return
    if (this.state[index] === MISSING) { this.missingCount--; clearBit(this.missingBits, index) }
    for (const o of this.owners.get(index) ?? []) this.inFlight.get(o)?.delete(index)
    this.owners.delete(index)
    this.state[index] = DONE
    setBit(this.doneBits, index)
    this.doneCount++
  }

  /** The next piece for `id` (rarest first, then endgame duplicates), now in flight with it; null when there is none. */
  next (id: string): number | null {
    const flying = this.inFlight.get(id)
    if (flying === undefined) return null
    let best = -1
    let bestAvail = Infinity
    let ties = 0
    const bf = this.has.get(id)
    if (this.missingCount > 0 && bf !== undefined) {
      // the per-source lookups are hoisted out of the scan: it runs for every piece requested
      const refused = this.refused.get(id)
      const declined = this.declined.get(id)
      const skips = (refused?.size ?? 0) + (declined?.size ?? 0) > 0
      const state = this.state
      const avail = this.availability
      // one complete holder and no other source known (one peer shares, one gets): there is no
      // copy to spread, so pieces go in file order, and the whole-file hash runs as they land
      // instead of re-reading most of the file once the last piece is in
      const inOrder = this.seeds === 1 && this.has.size === 1
      for (let i = 0; i < this.pieces; i++) {
        if (state[i] !== MISSING) continue
        if (bf !== null && (bf[i >> 3] & (0x80 >> (i & 7))) === 0) continue
        if (skips && (refused?.has(i) === true || declined?.has(i) === true)) continue
        const a = avail[i]
        if (a < bestAvail) { best = i; bestAvail = a; ties = 1 } else if (a === bestAvail && !inOrder && this.random() * ++ties < 1) best = i // reservoir pick among ties
      }
    }
    // the endgame starts only when every piece is done or on its way: before that, a duplicate
    // would take bandwidth from a piece nobody is fetching yet
    if (best < 0 && this.missingCount === 0) best = this.endgamePick(id, flying)
    if (best < 0) return null
    if (this.state[best] === MISSING) { this.missingCount--; clearBit(this.missingBits, best) }
    this.state[best] = IN_FLIGHT
    let o = this.owners.get(best)
    if (o === undefined) { o = new Set(); this.owners.set(best, o) }
    o.add(id)
    flying.add(best)
    return best
  }

  /** Endgame: a piece in flight elsewhere that `id` holds and is not fetching, with the fewest copies in flight. */
  private endgamePick (id: string, flying: Set<number>): number {
    let best = -1
    let fewest = this.maxDuplicates
    for (const [i, o] of this.owners) {
      if (flying.has(i) || !this.holds(id, i) || o.size >= fewest) continue
      best = i; fewest = o.size
    }
    return best
  }

  /** Piece `index` arrived from `id` and is stored. Returns the other sources fetching it (to cancel). */
  done (id: string, index: number): string[] {
    this.inFlight.get(id)?.delete(index)
    const others = [...(this.owners.get(index) ?? [])].filter((o) => o !== id)
    for (const o of others) this.inFlight.get(o)?.delete(index)
    this.owners.delete(index)
    if (this.state[index] !== DONE) {
      if (this.state[index] === MISSING) { this.missingCount--; clearBit(this.missingBits, index) }
      this.state[index] = DONE
      setBit(this.doneBits, index)
      this.doneCount++
    }
    return others
  }

  /**
   * `id` gives piece `index` back without it (cancelled, or `bad` data: then it is never asked
   * of `id` again): missing again unless others fetch it.
   */
  release (id: string, index: number, bad = false): void {
    if (bad) {
      let r = this.refused.get(id)
      if (r === undefined) { r = new Set(); this.refused.set(id, r) }
      r.add(index)
    }
    this.inFlight.get(id)?.delete(index)
    const o = this.owners.get(index)
    o?.delete(id)
    if (this.state[index] === IN_FLIGHT && (o === undefined || o.size === 0)) {
      this.owners.delete(index)
      this.state[index] = MISSING
      this.missingCount++
      setBit(this.missingBits, index)
    }
  }

  /** `id` failed: its in-flight pieces go back and it gets no more. */
  drop (id: string): number[] {
    const back = [...(this.inFlight.get(id) ?? [])]
    for (const i of back) this.release(id, i)
    this.inFlight.delete(id)
    this.forget(id)
    for (const i of this.seededBy.get(id) ?? []) this.seededCount[i]--
    this.seededBy.delete(id)
    return back
  }

  /** Does `id` hold a piece that is missing (or, in the endgame, in flight elsewhere)? */
  useful (id: string): boolean {
    const bf = this.has.get(id)
    if (bf === undefined) return false
    const refused = this.refused.get(id)
    const declined = this.declined.get(id)
    for (let i = 0; i < this.pieces; i++) {
      if (this.state[i] === DONE || (bf !== null && (bf[i >> 3] & (0x80 >> (i & 7))) === 0)) continue
      if (refused?.has(i) !== true && declined?.has(i) !== true) return true
    }
    return false
  }
}
