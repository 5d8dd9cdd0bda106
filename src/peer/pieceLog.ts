import { Observable } from 'rxjs'
import { WATCH_NOTIFY } from '../limits'
import { hasBit } from './picker'

/** A waiting watch: what it lacks, how many pieces that is, whether it waits for the hash list, and how to answer it. */
interface Listener { lacks: Uint8Array, missing: number, needHashes: boolean, tell: (index: number) => void }

/**
 * The pieces a download has stored, in the order they were stored. Its length is the holder's
 * `version`: an asker that last saw version v learns what is new since then, and a watch waits on
 * `newsIn` for the next piece.
 *
 * A stored piece wakes at most `notify` of the watches waiting for it (those that lack the most):
 * a holder can serve only a few askers at once, and telling all of them made all of them ask, and
 * most of them hear BUSY. The others are told by the next pieces, or by the last one (which tells
 * everyone: the holder is complete), or when their wait runs out.
 */
export class PieceLog {
  private readonly order: Uint32Array
  private count = 0
  private readonly listeners = new Set<Listener>()

  constructor (readonly pieces: number, private readonly notify = WATCH_NOTIFY) { this.order = new Uint32Array(pieces) }

  get version (): number { return this.count }

  /** Piece `index` is stored and verified (each piece at most once). */
  add (index: number): void {
    if (this.count >= this.pieces) return
    this.order[this.count++] = index
    const last = this.count === this.pieces
    // those that lack the most first (an asker that holds little has an idle uplink: its first
    // pieces put it to work), the longest waiting among equals
    this.tellMostLacking([...this.listeners].filter((l) => hasBit(l.lacks, index)), last ? Infinity : this.notify, index)
  }

  /**
   * The holder's uplink has gone idle: tell up to `notify` waiting watches that lack a piece set in
   * `have` (those that lack the most first). Pieces are told only when stored, to at most `notify`
   * watches each; without this, a holder that served those few sat idle until its next piece came,
   * while its other watchers lacked what it had. Returns how many were told.
   */
  kick (have: Uint8Array): number {
    return this.tellMostLacking([...this.listeners].filter((l) => intersects(l.lacks, have)), this.notify, -1)
  }

  /**
   * The holder now holds the verified hash list: every waiting watch whose asker has none is told
   * (-1), whatever it lacks. A hash list is a few KiB: it spreads from each peer that has it to its
   * watchers, instead of every leecher of a big swarm fetching it from the seeder, whose uplink is
   * the scarcest there is. Returns how many were told.
   */
  gotHashes (): number {
    let told = 0
    for (const l of [...this.listeners]) if (l.needHashes) { l.tell(-1); told++ }
    return told
  }

  /** Tell at most `limit` of `want`, those that lack the most first (the longest waiting among equals); how many were told. */
  private tellMostLacking (want: Listener[], limit: number, index: number): number {
    if (want.length > limit) want.sort((a, b) => b.missing - a.missing)
    const told = want.length > limit ? want.slice(0, limit) : want
    for (const l of told) l.tell(index)
    return told.length
  }

  /**
   * Each piece stored from now on that is set in `lacks` (a watch waits on this; -1: see `kick`
   * and, with `needHashes`, `gotHashes`).
   */
  newsIn (lacks: Uint8Array, needHashes = false): Observable<number> {
    return new Observable<number>((sub) => {
      let missing = 0
      for (const b of lacks) missing += POPCOUNT[b]
      const l: Listener = { lacks, missing, needHashes, tell: (i: number): void => sub.next(i) }
      this.listeners.add(l)
      return () => { this.listeners.delete(l) }
    })
  }

  /** Was a piece set in `lacks` stored after version `since`? */
  newSince (since: number, lacks: Uint8Array): boolean {
    for (let k = Math.max(0, since); k < this.count; k++) if (hasBit(lacks, this.order[k])) return true
    return false
  }
}

function intersects (a: Uint8Array, b: Uint8Array): boolean {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if ((a[i] & b[i]) !== 0) return true
  return false
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => { let n = 0; for (let x = b; x > 0; x >>= 1) n += x & 1; return n })
