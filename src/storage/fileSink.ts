import type { Observable } from 'rxjs'
import type { FileMetaData } from '../protocol/messages'
import type { PieceSink } from '../peer/leech'
import type { BufferPool } from './bufferPool'
import { OrderedHasher } from './orderedHasher'
import { PartFile } from './partFile'

/** The production sink: OUT/NAME.part written positionally, hashed in order as pieces land. */
export class FileSink implements PieceSink {
  private readonly part: PartFile
  private readonly hasher: OrderedHasher

  /** @param pool where piece buffers go back once written and hashed */
  constructor (meta: FileMetaData, outDir: string, private readonly pool?: BufferPool) {
    this.part = PartFile.open(outDir, meta.name, meta.size)
    this.hasher = new OrderedHasher(meta.size, () => this.part.source(), undefined, (b) => pool?.release(b))
  }

  write (data: Buffer, position: number): Observable<void> { return this.part.write(data, position) }
  stored (offset: number, data: Buffer): void {
    if (!this.hasher.add(offset, data)) this.pool?.release(data)
  }
  digest (): string { return this.hasher.digest() }
  commit (): string { return this.part.commit() }
  close (): void { this.part.close() }
}
