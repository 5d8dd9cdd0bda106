import { createHash, type Hash } from 'node:crypto'
import { of, type Observable } from 'rxjs'
import { HASH_HOLD_BYTES } from '../limits'
import type { PageSource } from '../../streams/readPages'

/** Where the ordered bytes of a file are hashed: in this thread, or in a worker. */
export interface HashTarget {
  /** Hash these bytes next. Returns true when it keeps `data` (and hands it back later). */
  update: (data: Buffer) => boolean
  /** Hash `length` bytes at `offset` of the file on disk next. */
  updateFromDisk: (offset: number, length: number) => void
  /** Hex SHA-256 of everything given, in order (synchronous where it can be, for virtual-time tests). */
  digest: () => Observable<string>
}

/** Hashing in this thread; pieces that were not held are read back through `disk`. */
export class LocalHashTarget implements HashTarget {
  private readonly hash: Hash = createHash('sha256')
  constructor (private readonly disk: () => PageSource) {}
  update (data: Buffer): boolean { this.hash.update(data); return false }
  updateFromDisk (offset: number, length: number): void {
    for (const v of this.disk().view(offset, length)) this.hash.update(v)
  }

  digest (): Observable<string> { return of(this.hash.digest('hex')) }
}

/**
 * The whole-file SHA-256 of a download, computed while pieces land in any order.
 *
 * Pieces that arrive at the hash cursor are hashed straight from the buffer they came in; pieces
 * ahead of it are held (up to `holdBytes`) or, past that, remembered as "on disk" and read back
 * through the mapping when the cursor reaches them. A single in-order source therefore hashes
 * the file at no extra read, and memory stays bounded whatever the order.
 */
export class OrderedHasher {
  private readonly target: HashTarget
  private cursor = 0
  private readonly held = new Map<number, Buffer>()
  private heldBytes = 0
  private readonly onDisk = new Map<number, number>()

  /**
   * @param target where bytes are hashed, or where pieces that were not held can be read back
   *   (hashing then happens in this thread)
   * @param holdBytes most bytes of out-of-order pieces kept in memory
   * @param onRelease called with each held buffer once it is hashed (to return it to a pool)
   */
  constructor (readonly size: number, target: HashTarget | (() => PageSource), private readonly holdBytes = HASH_HOLD_BYTES, private readonly onRelease?: (b: Buffer) => void) {
    this.target = typeof target === 'function' ? new LocalHashTarget(target) : target
  }

  /** Bytes hashed so far (the length of the contiguous prefix). */
  get hashed (): number { return this.cursor }

  /**
   * A piece is written and its bytes are `data`. Returns true when the hasher kept `data` (the
   * caller must leave it alone until `onRelease` gives it back); false when the caller may reuse
   * it at once.
   */
  add (offset: number, data: Buffer): boolean {
    if (offset < this.cursor || this.held.has(offset) || this.onDisk.has(offset)) return false
    if (offset === this.cursor) {
      const len = data.length // a target that keeps `data` may detach it
      const kept = this.target.update(data)
      this.cursor += len
      this.drain()
      return kept
    }
    if (this.heldBytes + data.length <= this.holdBytes) {
      this.held.set(offset, data)
      this.heldBytes += data.length
      return true
    }
    this.onDisk.set(offset, data.length)
    return false
  }

  /** A piece that is already on disk (a resumed download): read back when the cursor gets there. */
  addOnDisk (offset: number, length: number): void {
    if (offset < this.cursor || this.held.has(offset) || this.onDisk.has(offset)) return
    this.onDisk.set(offset, length)
    if (offset === this.cursor) this.drain()
  }

  private drain (): void {
    for (;;) {
      const h = this.held.get(this.cursor)
      if (h !== undefined) {
        this.held.delete(this.cursor)
        this.heldBytes -= h.length
        const len = h.length
        if (!this.target.update(h)) this.onRelease?.(h)
        this.cursor += len
        continue
      }
      const len = this.onDisk.get(this.cursor)
      if (len === undefined) return
      this.onDisk.delete(this.cursor)
      this.target.updateFromDisk(this.cursor, len)
      this.cursor += len
    }
  }

  /** The hex digest, once every byte has been added; throws (at once) if some are missing. */
  digest (): Observable<string> {
    if (this.cursor !== this.size) throw new RangeError(`hashed ${this.cursor} of ${this.size} bytes`)
    return this.target.digest()
  }
}
