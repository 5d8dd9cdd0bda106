import { Worker } from 'node:worker_threads'
import { Observable } from 'rxjs'
import { StorageError } from '../errors'
import type { HashTarget } from './orderedHasher'

// Plain JS, evaluated in the worker: no build step, same code under ts-node and from dist.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const crypto = require('node:crypto')
const fs = require('node:fs')
const hash = crypto.createHash('sha256')
const scratch = Buffer.allocUnsafe(4 * 1024 * 1024)
// the file read back short (another program truncated it): the file's digest cannot be right
let broken = false
// bytes [offset, offset + length) of fd into h, read scratch at a time: false when the file ends before
const hashRange = (fd, offset, length, h) => {
  for (let pos = offset, end = offset + length; pos < end;) {
    const n = fs.readSync(fd, scratch, 0, Math.min(scratch.length, end - pos), pos)
    if (n <= 0) return false
    h.update(scratch.subarray(0, n))
    pos += n
  }
  return true
}
parentPort.on('message', (m) => {
  try {
    if (m.t === 'piece') {
      const digest = crypto.createHash('sha256').update(new Uint8Array(m.ab, m.off, m.len)).digest()
      parentPort.postMessage({ t: 'piece', id: m.id, ab: m.ab, off: m.off, len: m.len, digest }, [m.ab])
    } else if (m.t === 'data') {
      if (!broken) hash.update(new Uint8Array(m.ab, m.off, m.len))
      parentPort.postMessage({ t: 'back', ab: m.ab, off: m.off, len: m.len }, [m.ab])
    } else if (m.t === 'disk') {
      // (through the download's descriptor: its file, whatever its name holds now)
      if (!broken) try { broken = !hashRange(m.fd, m.offset, m.length, hash) } catch { broken = true }
    } else if (m.t === 'check') {
      // pieces read through the download's own descriptor (its file, whatever its name holds now)
      // and checked against their hashes: the indexes of those that do not match
      const bad = []
      for (let k = 0; k < m.items.length; k++) {
        const [i, offset, length] = m.items[k]
        const h = crypto.createHash('sha256')
        if (!hashRange(m.fd, offset, length, h) || !h.digest().equals(Buffer.from(m.digests.buffer, m.digests.byteOffset + k * 32, 32))) bad.push(i)
      }
      parentPort.postMessage({ t: 'checked', id: m.id, bad })
    } else if (m.t === 'whole') {
      // a whole file read through a descriptor of this process, hashed: its hex digest
      const h = crypto.createHash('sha256')
      parentPort.postMessage({ t: 'whole', id: m.id, hex: hashRange(m.fd, 0, m.size, h) ? h.digest('hex') : '' })
    } else if (m.t === 'digest') {
      parentPort.postMessage({ t: 'digest', hex: broken ? '' : hash.digest('hex') })
    }
  } catch (err) {
    parentPort.postMessage({ t: 'error', message: String(err && err.message || err) })
  }
})
`

/**
 * SHA-256 in a worker thread, so hashing a download runs beside receiving and writing it
 * instead of on the same core. Piece buffers are transferred (not copied) to the worker and
 * handed back through `onReturn` once hashed; bytes not held in memory are read by the worker
 * through the download's descriptor `fd` (a read that comes back short, the file truncated by
 * another program, makes the digest '': the final check then finds the pieces that changed).
 * Messages are handled in order, so the hash sees the file in order. A worker that fails is a
 * StorageError (no fault of a peer's).
 */
export class WorkerHashTarget implements HashTarget {
  private readonly worker: Worker
  /** A second worker for piece hashes, so checking pieces never queues behind the file hash. */
  private readonly pieceWorker: Worker
  private failed: Error | null = null
  private waiting: { resolve: (hex: string) => void, reject: (e: Error) => void } | null = null
  private readonly pieces = new Map<number, { resolve: (r: { digest: Buffer, data: Buffer }) => void, reject: (e: Error) => void }>()
  /** Pending `check` and `whole` requests, by id: their reply message goes to `resolve`. */
  private readonly replies = new Map<number, { resolve: (m: { bad?: number[], hex?: string }) => void, reject: (e: Error) => void }>()
  private nextId = 1

  /**
   * @param fd the descriptor the download writes through, for bytes that must be read back
   * @param owns whether a buffer's whole ArrayBuffer is ours to move to the worker (pool buffers
   *   are; Node's shared small-buffer slab never is): others are copied
   * @param onReturn receives each moved buffer back once hashed
   */
  constructor (private readonly fd: number, private readonly owns: (b: Buffer) => boolean, onReturn: (b: Buffer) => void, private readonly claim: (b: Buffer) => void = () => {}) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true })
    this.pieceWorker = new Worker(WORKER_SOURCE, { eval: true })
    for (const w of [this.worker, this.pieceWorker]) {
      w.unref()
      w.on('message', (m: { t: string, id?: number, ab?: ArrayBuffer, off?: number, len?: number, hex?: string, message?: string, digest?: Uint8Array }) => this.onMessage(m, onReturn))
      w.on('error', (err) => this.fail(new StorageError(`hash worker: ${err.message}`, err)))
    }
  }

  private onMessage (m: { t: string, id?: number, ab?: ArrayBuffer, off?: number, len?: number, hex?: string, message?: string, digest?: Uint8Array, bad?: number[] }, onReturn: (b: Buffer) => void): void {
    {
      if (m.t === 'back') onReturn(Buffer.from(m.ab as ArrayBuffer, m.off, m.len))
      else if (m.t === 'checked' || m.t === 'whole') {
        const r = this.replies.get(m.id as number)
        this.replies.delete(m.id as number)
        r?.resolve(m)
      }
      else if (m.t === 'piece') {
        const p = this.pieces.get(m.id as number)
        this.pieces.delete(m.id as number)
        const data = Buffer.from(m.ab as ArrayBuffer, m.off, m.len)
        this.claim(data)
        p?.resolve({ digest: Buffer.from(m.digest as Uint8Array), data })
      }
      else if (m.t === 'digest') { this.waiting?.resolve(m.hex as string); this.waiting = null } else if (m.t === 'error') this.fail(new StorageError(`hash worker: ${m.message ?? '?'}`))
    }
  }

  private fail (err: Error): void {
    this.failed ??= err
    for (const p of this.pieces.values()) p.reject(err)
    this.pieces.clear()
    for (const r of this.replies.values()) r.reject(err)
    this.replies.clear()
    this.waiting?.reject(err)
    this.waiting = null
  }

  update (data: Buffer): boolean {
    if (!this.owns(data)) {
      const copy = Uint8Array.prototype.slice.call(data).buffer
      this.worker.postMessage({ t: 'data', ab: copy, off: 0, len: data.length }, [copy])
      return false
    }
    const ab = data.buffer as ArrayBuffer
    this.worker.postMessage({ t: 'data', ab, off: data.byteOffset, len: data.length }, [ab])
    return true
  }

  /**
   * SHA-256 of one piece, computed in the worker. The buffer travels there and back: use the
   * `data` this emits, not the one passed in (a buffer we do not own is copied instead).
   */
  hashPiece (data: Buffer): Observable<{ digest: Buffer, data: Buffer }> {
    return new Observable((sub) => {
      if (this.failed !== null) { sub.error(this.failed); return }
      const id = this.nextId++
      this.pieces.set(id, { resolve: (r) => { sub.next(r); sub.complete() }, reject: (e) => sub.error(e) })
      if (this.owns(data)) {
        const ab = data.buffer as ArrayBuffer
        this.pieceWorker.postMessage({ t: 'piece', id, ab, off: data.byteOffset, len: data.length }, [ab])
      } else {
        const copy = Uint8Array.prototype.slice.call(data).buffer
        this.pieceWorker.postMessage({ t: 'piece', id, ab: copy, off: 0, len: data.length }, [copy])
      }
      // the answer cannot be recalled: an unsubscribed caller just stops listening
      return () => { const p = this.pieces.get(id); if (p !== undefined) this.pieces.set(id, { resolve: () => {}, reject: () => {} }) }
    })
  }

  /**
   * Check pieces as they are on disk, read through descriptor `fd` (this process's, shared by its
   * threads), against `hashes` (32 bytes per piece, by index): the indexes that do not match. The
   * pieces are split between both workers, so checking a file takes about half as long.
   */
  checkPieces (fd: number, items: Array<[index: number, offset: number, length: number]>, hashes: Buffer): Observable<number[]> {
    const ask = (w: Worker, part: Array<[number, number, number]>): Promise<number[]> => new Promise((resolve, reject) => {
      if (this.failed !== null) { reject(this.failed); return }
      if (part.length === 0) { resolve([]); return }
      const id = this.nextId++
      this.replies.set(id, { resolve: (m) => resolve(m.bad ?? []), reject })
      const digests = Buffer.concat(part.map(([i]) => hashes.subarray(i * 32, i * 32 + 32)))
      w.postMessage({ t: 'check', id, fd, items: part, digests })
    })
    return new Observable<number[]>((sub) => {
      Promise.all([ask(this.worker, items.filter((_, k) => k % 2 === 0)), ask(this.pieceWorker, items.filter((_, k) => k % 2 === 1))])
        .then(([a, b]) => { sub.next([...a, ...b].sort((x, y) => x - y)); sub.complete() }, (err: Error) => sub.error(err))
    })
  }

  /** SHA-256 (hex) of the first `size` bytes read through descriptor `fd`, in the worker ('' when the file is shorter). */
  hashWhole (fd: number, size: number): Observable<string> {
    return new Observable<string>((sub) => {
      if (this.failed !== null) { sub.error(this.failed); return }
      const id = this.nextId++
      this.replies.set(id, { resolve: (m) => { sub.next(m.hex ?? ''); sub.complete() }, reject: (e) => sub.error(e) })
      this.pieceWorker.postMessage({ t: 'whole', id, fd, size })
    })
  }

  updateFromDisk (offset: number, length: number): void {
    this.worker.postMessage({ t: 'disk', fd: this.fd, offset, length })
  }

  digest (): Observable<string> {
    return new Observable<string>((sub) => {
      if (this.failed !== null) { sub.error(this.failed); return }
      this.waiting = { resolve: (hex) => { sub.next(hex); sub.complete() }, reject: (e) => sub.error(e) }
      this.worker.postMessage({ t: 'digest' })
    })
  }

  /** Stop the worker. Safe to call twice. */
  close (): void {
    void this.worker.terminate()
    void this.pieceWorker.terminate()
  }
}
