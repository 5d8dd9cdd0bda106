import { defer, type Observable } from 'rxjs'
import type { FileMetaData } from '../protocol/messages'
import type { PieceSink } from '../peer/leech'
import type { BufferPool } from './bufferPool'
import { OrderedHasher } from './orderedHasher'
import { PartFile } from './partFile'
import type { MappedFile } from './mappedFile'
import { WorkerHashTarget } from './workerHash'

/** Files from this size on are hashed in a worker thread (below it, starting one costs more than it saves). */
export const WORKER_HASH_MIN_BYTES = Number(process.env.LP2P_WORKER_HASH_MIN ?? 32 * 1024 * 1024)

/** The production sink: OUT/NAME.part written positionally, hashed in order as pieces land. */
export class FileSink implements PieceSink {
  private readonly part: PartFile
  private readonly hasher: OrderedHasher

  private readonly worker: WorkerHashTarget | null = null

  /** @param pool where piece buffers go back once written and hashed */
  constructor (meta: FileMetaData, outDir: string, private readonly pool?: BufferPool) {
    this.part = PartFile.open(outDir, meta.name, meta.size)
    const release = (b: Buffer): void => pool?.release(b)
    // big files are hashed in a worker thread, beside the transfer instead of on its core
    if (meta.size >= WORKER_HASH_MIN_BYTES) this.worker = new WorkerHashTarget(this.part.partPath, (b) => pool?.owns(b) ?? false, (b) => pool?.adopt(b), (b) => pool?.claim(b))
    this.hasher = new OrderedHasher(meta.size, this.worker ?? (() => this.part.source()), undefined, release)
  }

  write (data: Buffer, position: number): Observable<void> { return this.part.write(data, position) }
  stored (offset: number, data: Buffer): void {
    if (!this.hasher.add(offset, data)) this.pool?.release(data)
  }
  digest (): Observable<string> { return defer(() => this.hasher.digest()) }

  /** Piece hashes in the worker too, when there is one: the event loop only moves bytes. */
  get hashPiece (): ((data: Buffer) => Observable<{ digest: Buffer, data: Buffer }>) | undefined {
    const w = this.worker
    return w === null ? undefined : (data) => w.hashPiece(data)
  }
  commit (): string { return this.part.commit() }
  /** The bytes written so far, through a read-only mapping (for serving verified pieces). */
  source (): MappedFile { return this.part.source() }
  close (): void { this.worker?.close(); this.part.close() }
}
