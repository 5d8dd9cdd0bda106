import { createHash } from 'node:crypto'
import { defer, type Observable, of } from 'rxjs'
import type { PieceSink } from '../peer/leech'
import { hashRoot } from '../storage/hashFile'
import type { FileMetaData } from '../protocol/messages'

/**
 * Piece payloads without the bytes: every payload handed out is a view of one shared zero
 * buffer, tagged with the file and piece it stands for and whether the sender's
 * copy was good. A piece's "hash" is a deterministic digest of (file id, index), so the
 * production checks (hash list against the root, each piece against its hash, the whole file
 * against its id) run unchanged, and 10,000 nodes fit in memory.
 */
export class PieceTags {
  private zero = Buffer.alloc(0)

  payload (fileId: string, index: number, length: number, good = true): Buffer {
    if (this.zero.length < length) this.zero = Buffer.alloc(length)
    const b = this.zero.subarray(0, length) as Tagged
    b[TAG] = { fileId, index, good }
    return b
  }

  tag (b: Buffer): PieceTag | undefined { return (b as Tagged)[TAG] }

  // (every node checks every piece: each digest is computed once per simulation)
  private readonly digests = new Map<string, Buffer[]>()

  /** `pieceDigest(fileId, index)`, kept. */
  digest (fileId: string, index: number): Buffer {
    let file = this.digests.get(fileId)
    if (file === undefined) { file = []; this.digests.set(fileId, file) }
    return (file[index] ??= pieceDigest(fileId, index))
  }
}

interface PieceTag { fileId: string, index: number, good: boolean }
// a property on the view rather than a WeakMap: millions of short-lived weak entries make every GC slow
const TAG = Symbol('sim piece')
type Tagged = Buffer & { [TAG]?: PieceTag }

/** A simulated file: its metadata (as the tracker will cut it) and its piece hashes. */
export interface SimFile {
  meta: FileMetaData
  pieceHashes: Buffer
  root: string
}

export function pieceDigest (fileId: string, index: number): Buffer {
  return createHash('sha256').update(`${fileId}:${index}`).digest()
}

export function simFile (meta: FileMetaData): SimFile {
  const pieceHashes = Buffer.alloc(meta.pieces * 32)
  for (let i = 0; i < meta.pieces; i++) pieceDigest(meta.hash, i).copy(pieceHashes, i * 32)
  return { meta, pieceHashes, root: hashRoot(pieceHashes) }
}

const WRONG = Buffer.alloc(32, 0xff)

/**
 * Where a simulated download stores its pieces: which ones arrived good (kept across a node's
 * crash and restart, like a `.part` file and its state). The whole-file digest is the file id
 * only when every piece stored was a good copy of the right piece.
 */
export class SimSink implements PieceSink {
  readonly present: number[]
  closed = false

  constructor (readonly meta: FileMetaData, private readonly tags: PieceTags, readonly good: Uint8Array) {
    this.present = []
    for (let i = 0; i < good.length; i++) if (good[i] === 1) this.present.push(i)
  }

  write (): Observable<void> { return of(undefined) }

  stored (offset: number, data: Buffer): void {
    const i = Math.floor(offset / this.meta.blockSize)
    const t = this.tags.tag(data)
    this.good[i] = t !== undefined && t.good && t.fileId === this.meta.hash && t.index === i ? 1 : 2
  }

  // (looked up when asked: the fetch subscribes at once)
  readonly hashPiece = (data: Buffer): Observable<{ digest: Buffer, data: Buffer }> => {
    const t = this.tags.tag(data)
    return of({ digest: t === undefined || !t.good ? WRONG : this.tags.digest(t.fileId, t.index), data })
  }

  digest (): Observable<string> {
    return defer(() => of(this.good.every((g) => g === 1) ? this.meta.hash : createHash('sha256').update(this.good).digest('hex')))
  }

  commit (): string { return `sim:${this.meta.name}` }
  close (): void { this.closed = true }
  discardState (): void { this.good.fill(0) }
}
