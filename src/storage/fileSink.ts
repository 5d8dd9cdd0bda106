import type { Observable } from 'rxjs'
import type { FileMetaData } from '../protocol/messages'
import type { PieceSink } from '../peer/leech'
import { OrderedHasher } from './orderedHasher'
import { PartFile } from './partFile'

/** The production sink: OUT/NAME.part written positionally, hashed in order as pieces land. */
export class FileSink implements PieceSink {
  private readonly part: PartFile
  private readonly hasher: OrderedHasher

  constructor (meta: FileMetaData, outDir: string) {
    this.part = PartFile.open(outDir, meta.name, meta.size)
    this.hasher = new OrderedHasher(meta.size, () => this.part.source())
  }

  write (data: Buffer, position: number): Observable<void> { return this.part.write(data, position) }
  stored (offset: number, data: Buffer): void { this.hasher.add(offset, data) }
  digest (): string { return this.hasher.digest() }
  commit (): string { return this.part.commit() }
  close (): void { this.part.close() }
}
