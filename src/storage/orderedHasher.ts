import { createHash, type Hash } from 'node:crypto'
import { HASH_HOLD_BYTES } from '../limits'
import type { PageSource } from '../../streams/readPages'

/**
 * The whole-file SHA-256 of a download, computed while pieces land in any order.
 *
 * Pieces that arrive at the hash cursor are hashed straight from the buffer they came in; pieces
 * ahead of it are held (up to `holdBytes`) or, past that, remembered as "on disk" and read back
 * through the mapping when the cursor reaches them. A single in-order source therefore hashes
 * the file at no extra read, and memory stays bounded whatever the order.
 */
export class OrderedHasher {
  private readonly hash: Hash = createHash('sha256')
  private cursor = 0
  private readonly held = new Map<number, Buffer>()
  private heldBytes = 0
  private readonly onDisk = new Map<number, number>()

  /**
   * @param disk where pieces that were not held can be read back
   * @param holdBytes most bytes of out-of-order pieces kept in memory
   * @param onRelease called with each held buffer once it is hashed (to return it to a pool)
   */
  constructor (readonly size: number, private readonly disk: () => PageSource, private readonly holdBytes = HASH_HOLD_BYTES, private readonly onRelease?: (b: Buffer) => void) {}

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
      this.hash.update(data)
      this.cursor += data.length
      this.drain()
      return false
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
        this.hash.update(h)
        this.cursor += h.length
        this.onRelease?.(h)
        continue
      }
      const len = this.onDisk.get(this.cursor)
      if (len === undefined) return
      this.onDisk.delete(this.cursor)
      for (const v of this.disk().view(this.cursor, len)) this.hash.update(v)
      this.cursor += len
    }
  }

  /** The hex digest, once every byte has been added; throws if some are missing. */
  digest (): string {
    if (this.cursor !== this.size) throw new RangeError(`hashed ${this.cursor} of ${this.size} bytes`)
    return this.hash.digest('hex')
  }
}
