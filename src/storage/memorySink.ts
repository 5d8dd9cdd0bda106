import { defer, Observable } from 'rxjs'
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

  constructor (readonly meta: FileMetaData, readonly present: number[] = [], private readonly failWritesAfter = Infinity) {
    this.data = Buffer.alloc(meta.size)
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

  stored (offset: number, data: Buffer): void { this.hasher.add(offset, data) }
  digest (): Observable<string> { return defer(() => this.hasher.digest()) }
  commit (): string { this.committed = true; return `memory:${this.meta.name}` }
  close (): void { this.closed = true }
}
