import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { Observable } from 'rxjs'
import { StorageError } from '../errors'
import type { PositionalWriter } from '../../streams/writeSink'
import type { PageSource } from '../../streams/readPages'
import { MappedFile } from './mappedFile'
import { mkdirs } from './mkdirs'
import { partStem, safeFileName } from './names'

/**
 * A download in progress: `OUT/NAME.part`, written with positional writes (measured here about
 * twice as fast as writing into a mapping, and a full disk is an error instead of a SIGBUS),
 * read back through a read-only mapping. Renamed to `OUT/NAME` only by `commit`, which the
 * caller does after the whole-file hash matched.
 */
export class PartFile implements PositionalWriter {
  private fd: number | null
  private mapped: MappedFile | null = null

  /**
   * @param fresh the .part was created now, or had another size: none of its bytes can be pieces
   *   an earlier run wrote (a resume state beside it is stale: the .part was deleted or replaced)
   * @param lockPath NAME.part.lock, ours while the .part is open (see `lockPart`)
   */
  private constructor (readonly dir: string, readonly name: string, readonly partPath: string, readonly size: number, fd: number, readonly fresh: boolean, private lockPath: string | null) {
    this.fd = fd
  }

  /**
   * Open (or create) OUT/NAME.part sized to the file. The name must be a safe single component.
   * With the file's id, a name too long for the working files' suffixes gets a shorter stem (see `partStem`).
   */
  static open (dir: string, name: string, size: number, fileId?: string, freeBytes: (dir: string) => number | null = freeSpace): PartFile {
    safeFileName(name)
    const partPath = path.join(dir, `${fileId === undefined ? name : partStem(name, fileId)}.part`)
    // the name is taken (a file, a folder, a link): say so now, not after the whole download
    // (commit checks again: it may be taken meanwhile)
    const finalPath = path.join(dir, name)
    let taken = false
    try { fs.lstatSync(finalPath); taken = true } catch { /* free (or unreadable: commit says) */ }
    if (taken) throw new StorageError(`${finalPath} already exists: remove it or choose another --out`)
    try {
      mkdirs(dir)
    } catch (err) {
      throw new StorageError(`cannot open ${partPath}: ${(err as Error).message}`, err)
    }
    const lockPath = lockPart(partPath)
    // (a .part that cannot be opened or sized is not ours after all: the lock goes back)
    const fail = (what: string, err: unknown, fd?: number): never => {
      if (fd !== undefined) fs.closeSync(fd)
      fs.rmSync(lockPath, { force: true })
      throw new StorageError(`${what}: ${(err as Error).message}`, err)
    }
    let fd: number
    try {
      fd = fs.openSync(partPath, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o644)
    } catch (err) {
      return fail(`cannot open ${partPath}`, err)
    }
    let fresh: boolean
    try {
      fresh = fs.fstatSync(fd).size !== size
    } catch (err) {
      return fail(`cannot size ${partPath} to ${size} bytes`, err, fd)
    }
    // a new download the disk has no room for: said now, not once the disk is full (a resume is
    // not checked: what it still needs is not what the file system says it allocated, on one that
    // compresses; a disk that fills up during it keeps what was verified)
    const free = fresh ? freeBytes(dir) : null
    if (free !== null && free < size) {
      fs.rmSync(partPath, { force: true })
      return fail(`not enough free space in ${dir}`, new Error(`the download needs ${formatBytes(size)} more, ${formatBytes(free)} free`), fd)
    }
    try {
      if (fresh) fs.ftruncateSync(fd, size)
    } catch (err) {
      return fail(`cannot size ${partPath} to ${size} bytes`, err, fd)
    }
    return new PartFile(dir, name, partPath, size, fd, fresh, lockPath)
  }

  get finalPath (): string { return path.join(this.dir, this.name) }

  write (data: Buffer, position: number): Observable<void> {
    return new Observable<void>((sub) => {
      const fd = this.fd
      if (fd === null) { sub.error(new StorageError(`${this.partPath} is closed`)); return }
      let done = 0
      const step = (): void => {
        fs.write(fd, data, done, data.length - done, position + done, (err, n) => {
          if (err != null) { sub.error(new StorageError(`write to ${this.partPath} failed: ${err.message}`, err)); return }
          done += n
          if (done < data.length) { step(); return }
          sub.next(); sub.complete()
        })
      }
      if (data.length === 0) { sub.next(); sub.complete() } else step()
      // a write in the OS can't be recalled: unsubscribing only stops listening for it
    })
  }

  /** The bytes written so far, through a read-only mapping (coherent with the writes). */
  source (): MappedFile {
    if (this.mapped === null) this.mapped = MappedFile.open(this.partPath)
    return this.mapped
  }

  /**
   * Close the descriptor and move .part to the final name. Call only for verified content.
   * Never replaces an existing file: the move is a hard link (which fails if the name is taken)
   * followed by removing the .part, so a concurrent or earlier file of that name survives.
   */
  commit (): string {
    this.close()
    try {
      fs.linkSync(this.partPath, this.finalPath)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EEXIST') throw new StorageError(`${this.finalPath} already exists: remove it or choose another --out (the verified download is kept as ${this.partPath})`, err)
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV') throw new StorageError(`cannot create ${this.finalPath}: ${(err as Error).message}`, err)
      // a file system without hard links: rename, after checking the name is free
      if (fs.existsSync(this.finalPath)) throw new StorageError(`${this.finalPath} already exists: remove it or choose another --out`, err)
      fs.renameSync(this.partPath, this.finalPath)
      return this.finalPath
    }
    fs.unlinkSync(this.partPath)
    return this.finalPath
  }

  /** Close without renaming: the .part stays for a later resume. Safe to call twice. */
  close (): void {
    this.mapped?.close(); this.mapped = null
    if (this.fd !== null) { fs.closeSync(this.fd); this.fd = null }
    this.unlock()
  }

  /** Close and remove the .part (nothing in it worth a resume). Not after `commit`. */
  discard (): void {
    this.mapped?.close(); this.mapped = null
    if (this.fd !== null) { fs.closeSync(this.fd); this.fd = null }
    // (while the lock is still ours: no other get opened this .part meanwhile)
    if (this.lockPath !== null) fs.rmSync(this.partPath, { force: true })
    this.unlock()
  }

  private unlock (): void {
    if (this.lockPath !== null) { fs.rmSync(this.lockPath, { force: true }); this.lockPath = null }
  }
}

/**
 * This process's mark in its locks, beside its pid: a lock with our pid and another mark was left
 * by an earlier process that had our pid (taken over); one with our mark is held by this process,
 * under whatever name it was opened (a symlinked folder included).
 */
const OWN_MARK = randomBytes(8).toString('hex')

/**
 * Take NAME.part.lock (it holds our pid and mark): two downloads of one file into one folder would
 * write the same .part and resume state. A lock whose process is gone (a crash, a SIGKILL) is taken
 * over; one whose process runs is a StorageError naming it (this one included). Returns the lock's path.
 */
function lockPart (partPath: string): string {
  const lockPath = `${partPath}.lock`
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(lockPath, `${process.pid} ${OWN_MARK}\n`, { flag: 'wx', mode: 0o644 })
      return lockPath
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StorageError(`cannot create ${lockPath}: ${(err as Error).message}`, err)
    }
    let pid = NaN
    let mark = ''
    try {
      const [p, m] = fs.readFileSync(lockPath, 'utf8').slice(0, 64).trim().split(/\s+/)
      pid = Number(p); mark = m ?? ''
    } catch { /* gone meanwhile: try again */ }
    if (pid === process.pid && mark === OWN_MARK) throw new StorageError(`${partPath} is being downloaded already (by this process): one download of a file into a folder at a time`)
    // (our pid with another mark: left by an earlier process that had our pid; taken over)
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && running(pid)) {
      throw new StorageError(`${partPath} is being downloaded by another process (pid ${pid}): wait for it or stop it (its .part resumes)`)
    }
    fs.rmSync(lockPath, { force: true }) // its process is gone: the .part and its state are ours to resume
  }
  throw new StorageError(`cannot lock ${partPath}: ${lockPath} keeps coming back`)
}

function running (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

/** Bytes free for this user in the file system holding `dir` (null when it cannot tell). */
function freeSpace (dir: string): number | null {
  try {
    const s = fs.statfsSync(dir)
    // (root may also write into the blocks reserved for it)
    return (process.getuid?.() === 0 ? s.bfree : s.bavail) * s.bsize
  } catch { return null }
}

const formatBytes = (n: number): string => n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`
