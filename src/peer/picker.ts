/**
 * Which piece a source should fetch next. Pure bookkeeping: every piece is missing, in flight
 * with one source, or done. Sources only get pieces their bitfield says they hold; a source that
 * fails gives its in-flight pieces back.
 */
export class PiecePicker {
  private readonly state: Uint8Array // 0 missing, 1 in flight, 2 done
  private readonly owner = new Map<number, string>()
  private readonly has = new Map<string, Uint8Array | null>() // null: holds everything
  private readonly inFlight = new Map<string, Set<number>>()
  private doneCount = 0
  private firstMissing = 0

  constructor (readonly pieces: number) {
    this.state = new Uint8Array(pieces)
  }

  get remaining (): number { return this.pieces - this.doneCount }
  get complete (): boolean { return this.doneCount === this.pieces }

  /** A source and the pieces it holds (null bitfield: all of them). */
  addSource (id: string, bitfield: Uint8Array | null): void {
    this.has.set(id, bitfield)
    if (!this.inFlight.has(id)) this.inFlight.set(id, new Set())
  }

  holds (id: string, index: number): boolean {
    const bf = this.has.get(id)
    if (bf === undefined) return false
    return bf === null || (bf[index >> 3] & (0x80 >> (index & 7))) !== 0
  }

  /** A piece that was already verified before any source was asked (resume). */
  markDone (index: number): void {
    if (this.state[index] === 2) return
    this.state[index] = 2
    this.doneCount++
  }

  /** The lowest missing piece that `id` holds, now in flight with it; null when there is none. */
  next (id: string): number | null {
    const flying = this.inFlight.get(id)
    if (flying === undefined) return null
    while (this.firstMissing < this.pieces && this.state[this.firstMissing] !== 0) this.firstMissing++
    for (let i = this.firstMissing; i < this.pieces; i++) {
      if (this.state[i] !== 0 || !this.holds(id, i)) continue
      this.state[i] = 1
      this.owner.set(i, id)
      flying.add(i)
      return i
    }
    return null
  }

  /** Piece `index` arrived from `id` and is stored. */
  done (id: string, index: number): void {
    this.inFlight.get(id)?.delete(index)
    if (this.state[index] === 2) return
    this.state[index] = 2
    this.owner.delete(index)
    this.doneCount++
  }

  /** `id` failed: its in-flight pieces are missing again and it gets no more. */
  drop (id: string): number[] {
    const back = [...(this.inFlight.get(id) ?? [])]
    for (const i of back) {
      if (this.state[i] === 1 && this.owner.get(i) === id) {
        this.state[i] = 0
        this.owner.delete(i)
        if (i < this.firstMissing) this.firstMissing = i
      }
    }
    this.inFlight.delete(id)
    this.has.delete(id)
    return back
  }

  /** Does `id` hold any piece that is still missing? */
  useful (id: string): boolean {
    if (!this.has.has(id)) return false
    for (let i = this.firstMissing; i < this.pieces; i++) if (this.state[i] === 0 && this.holds(id, i)) return true
    return false
  }
}
