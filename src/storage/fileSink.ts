import { createHash, type Hash } from 'node:crypto'
import fs from 'node:fs'
import { defer, map, of, throwError, type Observable } from 'rxjs'
import { StorageError } from '../errors'
import type { FileMetaData } from '../protocol/messages'
import type { PieceSink } from '../peer/leech'
import type { BufferPool } from './bufferPool'
import { OrderedHasher, type HashTarget } from './orderedHasher'
import { PartFile } from './partFile'
import type { MappedFile } from './mappedFile'
import { WorkerHashTarget } from './workerHash'
import { loadState, removeState, saveState, stateFileId } from './resumeState'
import { clearBit, hasBit, setBit } from '../peer/picker'

/** Files from this size on are hashed in a worker thread (below it, starting one costs more than it saves). */
export const WORKER_HASH_MIN_BYTES = 32 * 1024 * 1024

/** Reads back of the .part (checks) go this many bytes at a time. */
const READ_CHUNK = 4 * 1024 * 1024

/** The resume state is saved at most this often while pieces land (and when the sink closes). */
const STATE_SAVE_MS = 500

/**
 * The production sink: OUT/NAME.part written positionally, hashed in order as pieces land, with
 * NAME.part.state recording the verified pieces so a killed download resumes.
 */
export class FileSink implements PieceSink {
  private readonly part: PartFile
  private readonly hasher: OrderedHasher
  private readonly worker: WorkerHashTarget | null = null
  private readonly have: Uint8Array
  readonly present: number[] = []
  private saveTimer: NodeJS.Timeout | null = null
  private dirty = false
  private committed = false
  /** The .part lost its name (removed, its folder too): the download stops at its next write. */
  private lost: StorageError | null = null

  /** @param pool where piece buffers go back once written and hashed */
  constructor (private readonly meta: FileMetaData, outDir: string, private readonly pool?: BufferPool) {
    // (an earlier run of this download under the file's former name, its sharers having renamed it
    // since, resumes too, instead of starting over beside a .part left for good)
    // (a .part found at the name is taken only if its state names this file, or, with no state, a
    // get that is gone left its lock on it (one killed before it saved its first state): another
    // program's partial download, a user's file, another version's download were resized,
    // overwritten and renamed, or removed)
    this.part = PartFile.open(outDir, meta.name, meta.size, meta.hash, {
      adopt: (other) => loadState(other, meta) !== null,
      ours: (p, staleLock) => { const id = stateFileId(p); return id === meta.hash || (staleLock && id === null) },
    })
    const release = (b: Buffer): void => pool?.release(b)
    // big files are hashed in a worker thread, beside the transfer instead of on its core
    if (meta.size >= WORKER_HASH_MIN_BYTES) this.worker = new WorkerHashTarget(this.part.descriptor as number, (b) => pool?.owns(b) ?? false, (b) => pool?.adopt(b), (b) => pool?.claim(b))
    this.hasher = new OrderedHasher(meta.size, this.worker ?? new PartHashTarget(this.part), undefined, release)
    // a resumed download: what the last run wrote and verified is read back, not fetched again
    // (not from a .part made now: a state whose .part was deleted would claim zeros as pieces)
    if (this.part.fresh) removeState(this.part.partPath)
    this.have = (this.part.fresh ? null : loadState(this.part.partPath, meta)) ?? new Uint8Array(Math.ceil(meta.pieces / 8))
    for (const [i, offset, length] of this.storedPieces()) {
      // (a .part found shorter, truncated since: the pieces past its end are gone; the rest are
      // checked with the file, and only those that changed are fetched again)
      if (offset + length > this.part.intact) { clearBit(this.have, i); this.dirty = true; continue }
      this.present.push(i)
      this.hasher.addOnDisk(offset, length)
    }
    // the state file exists from the start: on a disk that fills up later, saves overwrite it in
    // place (see saveState), so what was verified is still recorded for the resume
    // (and pieces cleared past a cut are saved now: the .part has its full size again)
    if (this.part.fresh) { this.dirty = true; this.saveNow() } else if (this.dirty) this.saveNow()
  }

  write (data: Buffer, position: number): Observable<void> { return this.lost !== null ? throwError(() => this.lost) : this.part.write(data, position) }
  stored (offset: number, data: Buffer): void {
    setBit(this.have, offset / this.meta.blockSize)
    this.dirty = true
    this.saveTimer ??= setTimeout(() => { this.saveTimer = null; this.saveNow() }, STATE_SAVE_MS)
    if (!this.hasher.add(offset, data)) this.pool?.release(data)
  }

  private saveNow (): void {
    if (!this.dirty || this.lost !== null) return
    this.dirty = false
    // (a .part removed, or its folder, was written to the end, unseen, then refused its name)
    const fd = this.part.descriptor
    if (fd !== null && linksOf(fd) === 0) {
      this.lost = new StorageError(`${this.part.partPath} was removed during the download (its folder too?): stopped, nothing renamed`)
      return
    }
    try {
      saveState(this.part.partPath, this.meta, this.have)
    } catch {
      // a full disk may refuse the state too: the download itself reports the storage error
    }
  }
  digest (): Observable<string> { return defer(() => this.hasher.digest()) }

  /** Piece hashes in the worker too, when there is one: the event loop only moves bytes. */
  get hashPiece (): ((data: Buffer) => Observable<{ digest: Buffer, data: Buffer }>) | undefined {
    const w = this.worker
    return w === null ? undefined : (data) => w.hashPiece(data)
  }
  commit (): string {
    this.stopSaving()
    this.dirty = false
    this.committed = true
    const done = this.part.commit()
    removeState(this.part.partPath)
    return done
  }

  private stopSaving (): void {
    if (this.saveTimer !== null) { clearTimeout(this.saveTimer); this.saveTimer = null }
  }
  /** The bytes written so far, through a read-only mapping (for serving verified pieces). */
  source (): MappedFile { return this.part.source() }
  /**
   * Stop; the .part and its state stay for a resume, unless no piece in it is verified (a get
   * that found no source, or was stopped before its first piece): a sparse file of the whole
   * size is no use to a resume, and the name should not look half-fetched. Safe to call twice.
   */
  close (): void {
    this.stopSaving()
    this.worker?.close()
    if (!this.committed && this.have.every((b) => b === 0)) {
      this.dirty = false
      this.part.discard()
      removeState(this.part.partPath)
      return
    }
    this.saveNow()
    // (a .part removed meanwhile leaves no state behind: it would describe nothing)
    if (this.lost !== null) try { removeState(this.part.partPath) } catch { /* its folder is gone too */ }
    this.part.close()
  }

  /**
   * What was downloaded hashed right: is it what the disk holds? Every piece is read back
   * through the download's own descriptor and checked against its hash (in both hash workers
   * for a big file), or, with no piece hashes, the whole file against its id. Another program
   * writing to the .part meanwhile (a truncate, an overwrite) made a file that did not match its
   * id get its name. The bad pieces are forgotten; emits how many there were.
   */
  verifyStored (pieceHashes: Buffer | null): Observable<number> {
    return defer(() => {
      const fd = this.part.descriptor
      if (fd === null) throw new StorageError(`${this.part.partPath} is closed`)
      const items = this.storedPieces()
      // (no piece hashes: the whole file against its id, in a worker for a big one: the event
      // loop, the lock's refresh among it, is not held for the time a read of it takes)
      if (pieceHashes === null) {
        const whole$ = this.worker === null ? of(this.wholeFileDigest(fd)) : this.worker.hashWhole(fd, this.meta.size)
        return whole$.pipe(map((hex) => hex === this.meta.hash ? 0 : this.forget(items.map(([i]) => i))))
      }
      const bad$ = this.worker === null || items.length < 2 ? of(this.badPieces(items, pieceHashes)) : this.worker.checkPieces(fd, items, pieceHashes)
      return bad$.pipe(map((bad) => this.forget(bad)))
    })
  }

  /** The stored pieces: index, offset, length. */
  private storedPieces (): Array<[number, number, number]> {
    const out: Array<[number, number, number]> = []
    const { blockSize, size, pieces } = this.meta
    for (let i = 0; i < pieces; i++) if (hasBit(this.have, i)) out.push([i, i * blockSize, Math.min(blockSize, size - i * blockSize)])
    return out
  }

  /** Which of `items` do not match their hashes, read here (positional reads: no mapping of a file that may have been truncated). */
  private badPieces (items: Array<[number, number, number]>, pieceHashes: Buffer): number[] {
    const fd = this.part.descriptor
    if (fd === null) throw new StorageError(`${this.part.partPath} is closed`)
    const buf = Buffer.allocUnsafe(Math.min(this.meta.blockSize, READ_CHUNK))
    return items.filter(([i, offset, length]) => digestRange(fd, offset, length, buf)?.equals(pieceHashes.subarray(i * 32, i * 32 + 32)) !== true).map(([i]) => i)
  }

  /** SHA-256 (hex) of the file read here ('' when it is shorter than it should be): small files only. */
  private wholeFileDigest (fd: number): string {
    return digestRange(fd, 0, this.meta.size, Buffer.allocUnsafe(READ_CHUNK))?.toString('hex') ?? ''
  }

  /** Forget pieces (they go again), saving the state: how many. */
  private forget (bad: number[]): number {
    for (const i of bad) clearBit(this.have, i)
    this.dirty = true
    this.stopSaving()
    this.saveNow()
    return bad.length
  }

  /**
   * Forget what the state says (its pieces did not add up to the file): the next run starts over.
   * The state stays, with no piece in it: it is what tells the next run that the .part is this
   * download's (one with no state is refused: it may be another program's).
   */
  discardState (): void {
    this.stopSaving()
    this.have.fill(0)
    this.dirty = true
    this.saveNow()
  }
}

/** How many names the file open at `fd` has (-1: cannot tell). */
function linksOf (fd: number): number {
  try { return fs.fstatSync(fd).nlink } catch { return -1 }
}

/** SHA-256 of `length` bytes at `offset` read through `fd` (pread, `buf` at a time); null when the file ends before. */
function digestRange (fd: number, offset: number, length: number, buf: Buffer): Buffer | null {
  const h = createHash('sha256')
  return hashRange(fd, offset, length, buf, h) ? h.digest() : null
}

/** `length` bytes at `offset` read through `fd` into `h`, `buf` at a time: false when the file ends before. */
function hashRange (fd: number, offset: number, length: number, buf: Buffer, h: Hash): boolean {
  for (let pos = offset, end = offset + length; pos < end;) {
    const n = fs.readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos)
    if (n <= 0) return false
    h.update(buf.subarray(0, n))
    pos += n
  }
  return true
}

/**
 * The whole-file hash in this thread (files below WORKER_HASH_MIN_BYTES). Pieces it did not hold
 * are read back through the download's descriptor: read through a mapping of the .part, one that
 * another program truncated killed the get with SIGBUS. A read that comes back short (or fails)
 * makes the digest '', never equal to an id: the final check then finds the pieces that changed.
 */
class PartHashTarget implements HashTarget {
  private readonly hash = createHash('sha256')
  private broken = false
  private buf: Buffer | null = null
  constructor (private readonly part: PartFile) {}
  update (data: Buffer): boolean { if (!this.broken) this.hash.update(data); return false }
  updateFromDisk (offset: number, length: number): void {
    const fd = this.part.descriptor
    if (this.broken) return
    this.buf ??= Buffer.allocUnsafe(READ_CHUNK)
    try { this.broken = fd === null || !hashRange(fd, offset, length, this.buf, this.hash) } catch { this.broken = true }
  }

  digest (): Observable<string> { return of(this.broken ? '' : this.hash.digest('hex')) }
}
