import { Subject, type Observable } from 'rxjs'

/**
 * The pieces a download has stored, in the order they were stored. Its length is the holder's
 * `version`: an asker that last saw version v learns what is new since then, and a watch waits on
 * `news$` for the next piece.
 */
export class PieceLog {
  private readonly order: Uint32Array
  private count = 0
  private readonly news = new Subject<number>()
  /** Each piece index as it is stored. */
  readonly news$: Observable<number> = this.news

  constructor (readonly pieces: number) { this.order = new Uint32Array(pieces) }

  get version (): number { return this.count }

  /** Piece `index` is stored and verified (each piece at most once). */
  add (index: number): void {
    if (this.count >= this.pieces) return
    this.order[this.count++] = index
    this.news.next(index)
  }

  /** Was a piece set in `lacks` stored after version `since`? */
  newSince (since: number, lacks: Uint8Array): boolean {
    for (let k = Math.max(0, since); k < this.count; k++) if (lacks.length > 0 && hasBitIn(lacks, this.order[k])) return true
    return false
  }
}

const hasBitIn = (bf: Uint8Array, i: number): boolean => (bf[i >> 3] & (0x80 >> (i & 7))) !== 0
