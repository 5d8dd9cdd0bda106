import { Observable } from 'rxjs'
import { WATCH_NOTIFY } from '../limits'

/**
 * The pieces a download has stored, in the order they were stored. Its length is the holder's
 * `version`: an asker that last saw version v learns what is new since then, and a watch waits on
 * `newsIn` for the next piece.
 *
 * A stored piece wakes at most `notify` of the watches waiting for it (the longest waiting first):
 * a holder can serve only a few askers at once, and telling all of them made all of them ask, and
 * most of them hear BUSY. The others are told by the next pieces, or by the last one (which tells
 * everyone: the holder is complete), or when their wait runs out.
 */
export class PieceLog {
  private readonly order: Uint32Array
  private count = 0
  private readonly listeners = new Set<(index: number) => boolean>()

  constructor (readonly pieces: number, private readonly notify = WATCH_NOTIFY) { this.order = new Uint32Array(pieces) }

  get version (): number { return this.count }

  /** Piece `index` is stored and verified (each piece at most once). */
  add (index: number): void {
    if (this.count >= this.pieces) return
    this.order[this.count++] = index
    const last = this.count === this.pieces
    let told = 0
    for (const f of [...this.listeners]) if (f(index) && ++told >= this.notify && !last) break
  }

  /** Each piece stored from now on that is set in `lacks` (a watch waits on this). */
  newsIn (lacks: Uint8Array): Observable<number> {
    return new Observable<number>((sub) => {
      const f = (i: number): boolean => { if (!hasBitIn(lacks, i)) return false; sub.next(i); return true }
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
