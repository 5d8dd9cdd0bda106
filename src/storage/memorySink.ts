import { createHash } from 'node:crypto'
import { defer, Observable, of } from 'rxjs'
import { StorageError } from '../errors'
import type { FileMetaData } from '../protocol/messages'
import type { PieceSink } from '../peer/leech'
import { OrderedHasher } from './orderedHasher'

/**
 * A sink that keeps the file in memory: for tests and simulations of the leech flow, with the
 * same contract as the file sink (ordered hashing, commit only after verification).
 */
export class MemorySink implements PieceSink {
  readonly data: Buffer
  private readonly hasher: OrderedHasher
  committed = false
  closed = false
  writes = 0

  /** Pieces it holds: `present` at the start, and each one stored since (minus those a check forgot). */
  readonly kept: Set<number>

  /** @param before the bytes an earlier run left (with `present`: the pieces it stored) */
  constructor (readonly meta: FileMetaData, readonly present: number[] = [], private readonly failWritesAfter = Infinity, before?: Buffer) {
    this.data = Buffer.alloc(meta.size)
    before?.copy(this.data)
    this.kept = new Set(present)
    this.hasher = new OrderedHasher(meta.size, () => ({ size: meta.size, view: (o, l) => [this.data.subarray(o, o + l)] }))
    for (const i of present) this.hasher.addOnDisk(i * meta.blockSize, Math.min(meta.blockSize, meta.size - i * meta.blockSize))
  }

  write (data: Buffer, position: number): Observable<void> {
    return new Observable<void>((sub) => {
      if (this.writes++ >= this.failWritesAfter) { sub.error(new StorageError('no space left on device (simulated)')); return }
      data.copy(this.data, position)
      sub.next(); sub.complete()
    })
  }

  stored (offset: number, data: Buffer): void { this.kept.add(offset / this.meta.blockSize); this.hasher.add(offset, data) }
  verifyStored (pieceHashes: Buffer | null): Observable<number> {
    return defer(() => {
      if (pieceHashes === null) {
        if (createHash('sha256').update(this.data).digest('hex') === this.meta.hash) return of(0)
        const n = this.kept.size
        this.kept.clear()
        return of(n)
      }
      let bad = 0
      for (const i of [...this.kept]) {
        const piece = this.data.subarray(i * this.meta.blockSize, Math.min(this.meta.size, (i + 1) * this.meta.blockSize))
        if (createHash('sha256').update(piece).digest().equals(pieceHashes.subarray(i * 32, i * 32 + 32))) continue
        this.kept.delete(i)
        bad++
      }
      return of(bad)
    })
  }
  digest (): Observable<string> { return defer(() => this.hasher.digest()) }
  commit (): string { this.committed = true; return `memory:${this.meta.name}` }
  close (): void { this.closed = true }
}
