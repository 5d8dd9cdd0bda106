import fs from 'node:fs'
import nodePath from 'node:path'
import type mmapIo from '@riaskov/mmap-io'
import { MAX_OPEN_FILES, MMAP_WINDOW_BYTES, PAGE_SIZE } from '../limits'
import type { PageSource } from '../../streams/readPages'
import { releaseMappings } from './unmap'

/** The file changed size under us: serving from it would read past its end (SIGBUS). */
export class FileChangedError extends Error {
  readonly code = 'ERR_FILE_CHANGED'
  /** @param gone nothing is at the path any more (removed, or renamed: a rescan tells which) */
  constructor (readonly path: string, readonly expected: number, readonly actual: number, how?: string, readonly gone = false) {
    super(how === undefined ? `${path} changed size (${expected} → ${actual})` : `${path} ${how}`)
  }
}

/**
 * Descriptors kept open over all mapped files, the least recently used closed first: a share of
 * thousands of files held one descriptor each, and ran out of them (EMFILE: the peer could not
 * even listen). A file whose descriptor was closed is opened again by its path when next read,
 * opened without blocking or following links, and must still be the same regular file (device
 * and inode), or it changed.
 */
const openFiles = new Map<MappedFile, true>()
const REOPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW
let maxOpenFiles = MAX_OPEN_FILES
/** For tests: how many descriptors mapped files may hold at once. */
export function setMaxOpenFiles (n: number): void { maxOpenFiles = Math.max(1, n) }
/** Descriptors mapped files hold now. */
export function openFileCount (): number { return openFiles.size }

const MAX_WINDOWS = 4
/**
 * mmap-io reads a mapping's offset as a signed 32-bit int: a window that starts at 2 GiB or later
 * cannot be mapped (EOVERFLOW; at 4 GiB it would wrap to the start of the file). Bytes from there
 * on are read with pread instead.
 */
export const MMAP_MAX_OFFSET = 2 ** 31 - 1

// (loaded at the first mapping: finding its binary loads about a hundred modules, which a `get`
// that is never asked for a piece, or an `ls`, does not need at start)
let mmapModule: typeof mmapIo | null = null
const mmapLib = (): typeof mmapIo => (mmapModule ??= require('@riaskov/mmap-io') as typeof mmapIo)

/**
 * A read-only memory mapping of a file, in windows of MMAP_WINDOW_BYTES (a Buffer can't exceed
 * 4 GiB, and mmap-io has no unmap: a window is released when its Buffer is collected, so we keep
 * few). `view` returns slices of the mapping: pages go to the socket or the hasher without a copy.
 *
 * Reading a page past the end of a file truncated after mapping kills the process (SIGBUS), so
 * `checkSize()` compares the size on disk before every read that can be served.
 */
export class MappedFile implements PageSource {
  private readonly windows = new Map<number, Buffer>()
  private fd: number | null
  private closed = false

  private constructor (private filePath: string, fd: number, readonly size: number, private readonly windowBytes: number, private readonly dev: number, private readonly ino: number) {
    this.fd = fd
    this.keep()
  }

  /** Where the file is (a reopen looks there, and checks it is the same file). */
  get path (): string { return this.filePath }

  /** The file was renamed to `to` (the same file: a reopen finds it there). */
  moved (to: string): void { this.filePath = to }

  /**
   * Map the regular file at `path`.
   * @param o.under a shared folder the file must be in: the path is not followed if it is a
   *   symlink, and the file opened must be inside the folder (a file swapped for a link, or a
   *   folder on its path for a link to another, after it was listed published what the link
   *   points to: a file of another user's, outside the share)
   * @param o.listed the file as it was listed (device and inode): another one found there now is refused
   */
  static open (path: string, windowBytes = MMAP_WINDOW_BYTES, o: { under?: string, listed?: { dev?: number, ino?: number } } = {}): MappedFile {
    if (windowBytes % PAGE_SIZE !== 0) throw new RangeError('window must be page aligned')
    const fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | (o.under === undefined ? 0 : fs.constants.O_NOFOLLOW))
    try {
      const st = fs.fstatSync(fd)
      if (!st.isFile()) throw new Error(`${path} is not a regular file`)
      if (o.listed?.ino !== undefined && (st.dev !== o.listed.dev || st.ino !== o.listed.ino)) throw new Error(`${path} was replaced since it was listed`)
      if (o.under !== undefined && !openedUnder(fd, o.under)) throw new Error(`${path} is not inside ${o.under} (a link on its way)`)
      return new MappedFile(path, fd, st.size, windowBytes, st.dev, st.ino)
    } catch (err) {
      fs.closeSync(fd)
      throw err
    }
  }

  /** This file's descriptor, opened again if it was closed to make room (the same file, or FileChangedError). */
  private handle (): number {
    if (this.closed) throw new Error(`${this.path} is closed`)
    if (this.fd !== null) { openFiles.delete(this); openFiles.set(this, true); return this.fd }
    let fd: number
    // (non-blocking: opening a FIFO put there meanwhile would otherwise block the process for good)
    try { fd = fs.openSync(this.path, REOPEN_FLAGS) } catch (err) { throw new FileChangedError(this.path, this.size, 0, `is gone: ${(err as Error).message}`, (err as NodeJS.ErrnoException).code === 'ENOENT') }
    const st = fs.fstatSync(fd)
    if (!st.isFile() || st.dev !== this.dev || st.ino !== this.ino) { fs.closeSync(fd); throw new FileChangedError(this.path, this.size, st.size, 'was replaced by another file') }
    this.fd = fd
    this.keep()
    return fd
  }

  /** Count this descriptor among the open ones; close the least recently used beyond the cap. */
  private keep (): void {
    openFiles.set(this, true)
    while (openFiles.size > maxOpenFiles) {
      const oldest = openFiles.keys().next().value as MappedFile
      openFiles.delete(oldest)
      oldest.releaseFd()
    }
  }

  /** Has this file no name left (removed, or another file renamed over it)? */
  private goneFromDisk (): boolean {
    try {
      if (this.fd !== null) return fs.fstatSync(this.fd).nlink === 0
      const st = fs.statSync(this.filePath)
      return st.dev !== this.dev || st.ino !== this.ino
    } catch { return true }
  }

  private releaseFd (): void {
    if (this.fd !== null) { fs.closeSync(this.fd); this.fd = null }
  }

  /** Throws FileChangedError when the file on disk is no longer the size we mapped. */
  checkSize (): void {
    const now = fs.fstatSync(this.handle()).size
    if (now !== this.size) throw new FileChangedError(this.path, this.size, now)
  }

  view (offset: number, length: number): Buffer[] {
    if (offset < 0 || length < 0 || offset + length > this.size) throw new RangeError(`range outside ${this.path}`)
    const out: Buffer[] = []
    let pos = offset
    const end = offset + length
    while (pos < end) {
      const w = Math.floor(pos / this.windowBytes)
      // (past what mmap-io can map: a copy read from the file)
      if (w * this.windowBytes > MMAP_MAX_OFFSET) { out.push(this.read(pos, end - pos)); break }
      const win = this.window(w)
      const start = pos - w * this.windowBytes
      const n = Math.min(end - pos, win.length - start)
      out.push(win.subarray(start, start + n))
      pos += n
    }
    return out
  }

  private window (w: number): Buffer {
    let win = this.windows.get(w)
    if (win !== undefined) {
      // most recently used goes last
      this.windows.delete(w); this.windows.set(w, win)
      return win
    }
    const fd = this.handle()
    const base = w * this.windowBytes
    const len = Math.min(this.windowBytes, this.size - base)
    const mmap = mmapLib()
    win = mmap.map(len, mmap.PROT_READ, mmap.MAP_SHARED, fd, base, mmap.MADV_SEQUENTIAL)
    this.windows.set(w, win)
    if (this.windows.size > MAX_WINDOWS) this.windows.delete(this.windows.keys().next().value as number)
    return win
  }

  /**
   * `length` bytes from `offset`, read (pread) into `into` (or a new buffer): no mapping is touched,
   * so a file truncated meanwhile gives FileChangedError, never SIGBUS. For passes over a whole
   * file (hashing): a file that shrinks while a mapping of it is read from JavaScript kills the process.
   */
  read (offset: number, length: number, into?: Buffer): Buffer {
    if (offset < 0 || length < 0 || offset + length > this.size) throw new RangeError(`range outside ${this.path}`)
    const fd = this.handle()
    const buf = into === undefined ? Buffer.allocUnsafe(length) : into.subarray(0, length)
    let got = 0
    while (got < length) {
      const n = fs.readSync(fd, buf, got, length - got, offset + got)
      if (n === 0) throw new FileChangedError(this.path, this.size, fs.fstatSync(fd).size)
      got += n
    }
    return buf
  }

  /**
   * Drop the windows and close the descriptor. Safe to call twice. The windows unmap when
   * collected; when the file is no longer on disk (removed, or replaced) they hold its blocks, so
   * a collection is asked for soon (`releaseMappings`).
   */
  close (): void {
    if (this.windows.size > 0 && this.goneFromDisk()) releaseMappings([...this.windows.values()].map((w) => w.buffer))
    this.windows.clear()
    this.closed = true
    openFiles.delete(this)
    this.releaseFd()
  }
}

/** Is the file open at `fd` inside folder `dir`, by the path the kernel resolved? (Where /proc cannot tell: yes.) */
function openedUnder (fd: number, dir: string): boolean {
  let real: string
  try { real = fs.readlinkSync(`/proc/self/fd/${fd}`) } catch { return true }
  const root = fs.realpathSync(dir)
  return real.startsWith(root.endsWith(nodePath.sep) ? root : root + nodePath.sep)
}
