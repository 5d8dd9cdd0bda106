import { Observable } from 'rxjs'

/**
 * The pieces a download has stored, in the order they were stored. Its length is the holder's
 * `version`: an asker that last saw version v learns what is new since then, and a watch waits on
 * `news$` for the next piece.
 */
export class PieceLog {
  private readonly order: Uint32Array
  private count = 0
  private readonly listeners = new Set<(index: number) => void>()

  constructor (readonly pieces: number) { this.order = new Uint32Array(pieces) }

  get version (): number { return this.count }

  /** Piece `index` is stored and verified (each piece at most once). */
  add (index: number): void {
    if (this.count >= this.pieces) return
    this.order[this.count++] = index
    for (const f of [...this.listeners]) f(index)
  }

  /** Each piece stored from now on that is set in `lacks` (a watch waits on this). */
  newsIn (lacks: Uint8Array): Observable<number> {
    return new Observable<number>((sub) => {
      const f = (i: number): void => { if (hasBitIn(lacks, i)) sub.next(i) }
      this.listeners.add(f)
      return () => { this.listeners.delete(f) }
    })
  }

  /** Was a piece set in `lacks` stored after version `since`? */
  newSince (since: number, lacks: Uint8Array): boolean {
    for (let k = Math.max(0, since); k < this.count; k++) if (lacks.length > 0 && hasBitIn(lacks, this.order[k])) return true
    return false
  }
}

const hasBitIn = (bf: Uint8Array, i: number): boolean => (bf[i >> 3] & (0x80 >> (i & 7))) !== 0
