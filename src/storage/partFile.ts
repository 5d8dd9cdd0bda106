import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Observable } from 'rxjs'
import { StorageError } from '../errors'
import type { PositionalWriter } from '../../streams/writeSink'
import type { PageSource } from '../../streams/readPages'
import { MappedFile } from './mappedFile'
import { mkdirs, subfolders } from './mkdirs'
import { nameParts, partStem } from './names'
import { stateFileId } from './resumeState'

/**
 * A download in progress: `OUT/NAME.part`, written with positional writes (measured here about
 * twice as fast as writing into a mapping, and a full disk is an error instead of a SIGBUS),
 * read back through a read-only mapping. Renamed to `OUT/NAME` only by `commit`, which the
 * caller does after the whole-file hash matched.
 */
export class PartFile implements PositionalWriter {
  private fd: number | null
  private mapped: MappedFile | null = null

  /** Touches the lock while the .part is open: a get elsewhere (another container, host) judges it by its age. */
  private refresh: NodeJS.Timeout | null = null

  /**
   * @param fresh the .part was created now, or (not known to be this download's: no `ours`) had
   *   another size: none of its bytes can be pieces an earlier run wrote (a resume state beside it
   *   is stale: the .part was deleted or replaced)
   * @param intact the bytes at its start that may hold pieces an earlier run wrote (0 when fresh;
   *   what is left of a .part of this download's that was truncated since)
   * @param lockPath NAME.part.lock, ours while the .part is open (see `lockPart`)
   */
  private constructor (readonly dir: string, readonly name: string, readonly partPath: string, readonly size: number, fd: number, readonly fresh: boolean, readonly intact: number, private lockPath: string | null) {
    this.fd = fd
    this.refresh = setInterval(() => {
      const now = new Date()
      if (this.lockPath !== null) try { fs.utimesSync(this.lockPath, now, now) } catch { /* gone: the next get judges */ }
    }, LOCK_REFRESH_MS)
    this.refresh.unref()
  }

  /**
   * Open (or create) OUT/NAME.part sized to the file. The name must be safe (`safeRelativeName`):
   * a name with folders (`train/0001.png`) is opened in those folders of OUT, made if missing.
   * With the file's id, a name too long for the working files' suffixes gets a shorter stem (see `partStem`).
   * @param o.freeBytes what the file system holding a folder has free (null: cannot tell)
   * @param o.adopt with no .part of this name, whether another one of the folder (by its path) is
   *   this download's under a former name of the file: it is moved here (see `adoptRenamedPart`)
   * @param o.ours whether a .part found at the name is an earlier run's of this download (its
   *   state names the file; `staleLock`: a get that is gone left its lock, so the .part is a get's
   *   working file): one that is not (another program's partial download, a user's file, another
   *   version's download) is refused, never resized, written or removed. Without it, any .part
   *   found is taken.
   */
  static open (dir: string, name: string, size: number, fileId?: string, o: { freeBytes?: (dir: string) => number | null, adopt?: (otherPart: string) => boolean, ours?: (partPath: string, staleLock: boolean) => boolean } = {}): PartFile {
    const { folders, base } = nameParts(name)
    if (folders.length > 0) {
      let sub: string
      try {
        mkdirs(dir)
        sub = subfolders(dir, folders)
      } catch (err) {
        throw new StorageError(`cannot open ${path.join(dir, name)}.part: ${(err as Error).message}`, err)
      }
      return PartFile.open(sub, base, size, fileId, o)
    }
    const freeBytes = o.freeBytes ?? freeSpace
    const partPath = path.join(dir, `${fileId === undefined ? name : partStem(name, fileId)}.part`)
    // the name is taken (a file, a folder, a link): say so now, not after the whole download
    // (commit checks again: it may be taken meanwhile)
    const finalPath = path.join(dir, name)
    let taken: fs.Stats | null = null
    try { taken = fs.lstatSync(finalPath) } catch { /* free (or unreadable: commit says) */ }
    if (taken !== null) {
      leftOfCommit(partPath, taken)
      throw new StorageError(`${finalPath} already exists: remove it or choose another --out`)
    }
    try {
      mkdirs(dir)
    } catch (err) {
      throw new StorageError(`cannot open ${partPath}: ${(err as Error).message}`, err)
    }
    const { lockPath, tookOver } = lockPart(partPath)
    // (under our lock: no other get creates this .part meanwhile)
    if (o.adopt !== undefined) adoptRenamedPart(dir, partPath, o.adopt)
    // (a .part that cannot be opened or sized is not ours after all: the lock goes back)
    const fail = (what: string, err: unknown, fd?: number): never => {
      if (fd !== undefined) fs.closeSync(fd)
      fs.rmSync(lockPath, { force: true })
      throw new StorageError(`${what}: ${(err as Error).message}`, err)
    }
    // a new .part is made here (O_EXCL); one found is opened only if it is this download's
    let fd: number
    let made = true
    try {
      fd = fs.openSync(partPath, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return fail(`cannot open ${partPath}`, err)
      made = false
      if (o.ours !== undefined && lstatOrNull(partPath)?.isFile() === true && !o.ours(partPath, tookOver)) {
        return fail(`${partPath} already exists and is not an earlier run of this download (no ${path.basename(partPath)}.state for this file beside it)`, new Error('remove it or choose another --out'))
      }
      try {
        fd = fs.openSync(partPath, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
      } catch (err2) {
        return fail(`cannot open ${partPath}`, err2)
      }
    }
    let st: fs.Stats
    try {
      st = fs.fstatSync(fd)
    } catch (err) {
      return fail(`cannot size ${partPath} to ${size} bytes`, err, fd)
    }
    // (a FIFO or a device put at that name is not resized, nor removed)
    if (!st.isFile()) return fail(`cannot open ${partPath}`, new Error('not a regular file'), fd)
    // (one of this download's of another size was truncated or extended since: sized again, what
    // is left of it may still hold pieces)
    const fresh = made || (o.ours === undefined && st.size !== size)
    const intact = fresh ? 0 : Math.min(st.size, size)
    // a new download the disk has no room for: said now, not once the disk is full (a resume is
    // not checked: what it still needs is not what the file system says it allocated, on one that
    // compresses; a disk that fills up during it keeps what was verified)
    const free = fresh ? freeBytes(dir) : null
    if (free !== null && free < size) {
      if (made) fs.rmSync(partPath, { force: true })
      return fail(`not enough free space in ${dir}`, new Error(`the download needs ${formatBytes(size)} more, ${formatBytes(free)} free`), fd)
    }
    try {
      if (st.size !== size) fs.ftruncateSync(fd, size)
    } catch (err) {
      // (a .part of no use, as above: a file size limit, EFBIG, left an empty one behind)
      if (made) fs.rmSync(partPath, { force: true })
      return fail(`cannot size ${partPath} to ${size} bytes`, err, fd)
    }
    return new PartFile(dir, name, partPath, size, fd, fresh, intact, lockPath)
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

  /** The descriptor the download writes through (its file, whatever the name holds now); null once closed. */
  get descriptor (): number | null { return this.fd }

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
    const fd = this.fd
    if (fd === null) throw new StorageError(`${this.partPath} is closed`)
    // the name must still hold the file this download wrote (and verified through its descriptor):
    // one moved, replaced or resized meanwhile is not given the final name
    const ours = fs.fstatSync(fd)
    const same = (st: fs.Stats | null): boolean => sameInode(st, ours)
    if (!same(lstatOrNull(this.partPath)) || ours.size !== this.size) {
      throw new StorageError(`${this.partPath} was moved, replaced or resized during the download (another program): nothing renamed; the same get starts again from what that name holds`)
    }
    this.mapped?.close(); this.mapped = null
    fs.closeSync(fd); this.fd = null
    // (the lock stays ours until the .part is gone: no other get opens it half-committed)
    try {
      try {
        fs.linkSync(this.partPath, this.finalPath)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EEXIST') throw new StorageError(`${this.finalPath} already exists: remove it or choose another --out (the verified download is kept as ${this.partPath})`, err)
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV') throw new StorageError(`cannot create ${this.finalPath}: ${(err as Error).message}`, err)
        // a file system without hard links: rename, after checking the name is free
        if (fs.existsSync(this.finalPath)) throw new StorageError(`${this.finalPath} already exists: remove it or choose another --out`, err)
        fs.renameSync(this.partPath, this.finalPath)
        if (!same(lstatOrNull(this.finalPath))) throw new StorageError(`${this.partPath} was replaced while it was renamed: ${this.finalPath} is not the verified download`)
        return this.finalPath
      }
      // (replaced between the check and the link: the name made is taken back)
      if (!same(lstatOrNull(this.finalPath))) {
        fs.rmSync(this.finalPath, { force: true })
        throw new StorageError(`${this.partPath} was replaced while it was renamed: nothing renamed`)
      }
      fs.unlinkSync(this.partPath)
      return this.finalPath
    } finally {
      this.unlock()
    }
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
    // only the file this download made: not one another program (or another get) put there since
    let ours: fs.Stats | null = null
    if (this.fd !== null) {
      try { ours = fs.fstatSync(this.fd) } catch { /* closed under us: keep what is there */ }
      fs.closeSync(this.fd); this.fd = null
    }
    if (this.holdsLock() && sameInode(lstatOrNull(this.partPath), ours)) fs.rmSync(this.partPath, { force: true })
    this.unlock()
  }

  /** Is the lock still this process's (its pid and mark)? Another get may have taken it over. */
  private holdsLock (): boolean {
    if (this.lockPath === null) return false
    try { const l = readLock(this.lockPath); return l.pid === process.pid && l.mark === OWN_MARK } catch { return false }
  }

  /** Remove the lock, if it is still ours (one taken over by another get stays theirs). */
  private unlock (): void {
    if (this.refresh !== null) { clearInterval(this.refresh); this.refresh = null }
    if (this.lockPath === null) return
    if (this.holdsLock()) fs.rmSync(this.lockPath, { force: true })
    this.lockPath = null
  }
}

/**
 * This process's mark in its locks, beside its pid: a lock with our pid and another mark was left
 * by an earlier process that had our pid (taken over); one with our mark is held by this process,
 * under whatever name it was opened (a symlinked folder included).
 */
const OWN_MARK = randomBytes(8).toString('hex')

/**
 * Where our pids mean something: host, boot and pid namespace. A lock from elsewhere (another
 * container on a shared volume, another host on NFS) cannot be checked with kill(pid, 0): it is
 * live while its holder keeps touching it (every LOCK_REFRESH_MS), stale LOCK_STALE_MS after.
 */
const PID_SPACE = ((): string => {
  const read = (f: () => string): string => { try { return f().trim() } catch { return '?' } }
  return [os.hostname(), read(() => fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')), read(() => fs.readlinkSync('/proc/self/ns/pid'))].join('|').replace(/\s+/g, '_')
})()
export const LOCK_REFRESH_MS = 10_000

/**
 * When a process started (clock ticks since boot, /proc/PID/stat's 22nd field), or '' where /proc
 * cannot tell. A lock holds its holder's: a lock whose pid now belongs to another process (pids are
 * reused, soon in a container) is stale, not held by a live get (every later get was refused, exit 8).
 */
function startOf (pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // (the command name, field 2, is in parentheses and may hold spaces: the fields after its last ')')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? ''
  } catch { return '' }
}
const OWN_START = startOf(process.pid)
export const LOCK_STALE_MS = 60_000

/** What a lock says: who holds it (a lock made before PID_SPACE was written has none: this one's is assumed) and when it was last touched. */
interface LockInfo { pid: number, mark: string, space: string, start: string, mtimeMs: number, raw: string }

/**
 * Take NAME.part.lock (it holds our pid and mark): two downloads of one file into one folder would
 * write the same .part and resume state. A lock whose process is gone (a crash, a SIGKILL) is taken
 * over; one whose process runs is a StorageError naming it (this one included). Returns the lock's path.
 */
function lockPart (partPath: string): { lockPath: string, tookOver: boolean } {
  const lockPath = `${partPath}.lock`
  let tookOver = false
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(lockPath, `${process.pid} ${OWN_MARK} ${PID_SPACE} ${OWN_START}\n`, { flag: 'wx', mode: 0o644 })
      return { lockPath, tookOver }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StorageError(`cannot create ${lockPath}: ${(err as Error).message}`, err)
    }
    let held: LockInfo
    try {
      held = readLock(lockPath)
    } catch (err) {
      // gone meanwhile: try again; not a file (a FIFO, a folder): not ours to remove
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new StorageError(`cannot read ${lockPath}: ${(err as Error).message}`, err)
      continue
    }
    const { pid, mark, space } = held
    const valid = Number.isSafeInteger(pid) && pid > 0 // (not a pid: junk, taken over)
    if (pid === process.pid && mark === OWN_MARK) throw new StorageError(`${partPath} is being downloaded already (by this process): one download of a file into a folder at a time`)
    if (valid && space !== PID_SPACE) {
      // a holder elsewhere: live while it touches its lock
      const age = Date.now() - held.mtimeMs
      if (age < LOCK_STALE_MS) throw new StorageError(`${partPath} is being downloaded by another process (pid ${pid} on ${space.split('|')[0]}, another host or container; its lock was touched ${Math.max(0, Math.round(age / 1000))} s ago): wait for it or stop it (its lock goes stale ${LOCK_STALE_MS / 1000} s after it stops)`)
    } else if (valid && pid !== process.pid && running(pid) && (held.start === '' || startOf(pid) === '' || startOf(pid) === held.start)) {
      // (our pid with another mark: left by an earlier process that had our pid; taken over)
      throw new StorageError(`${partPath} is being downloaded by another process (pid ${pid}): wait for it or stop it (its .part resumes)`)
    }
    // its holder is gone: the .part and its state are ours to resume. Moved aside first, and
    // removed only if it is still the lock judged stale (another get may have taken it over and
    // written its own between our read and now: that one is put back)
    // (named like a temporary: a peer sharing the folder never publishes one a crash left)
    const aside = `${lockPath}.${OWN_MARK}.stale.tmp`
    try { fs.renameSync(lockPath, aside) } catch { continue }
    let moved: LockInfo | null = null
    try { moved = readLock(aside) } catch { /* unreadable: not the one judged */ }
    if (moved !== null && moved.raw === held.raw) { fs.rmSync(aside, { force: true }); tookOver = true; continue }
    try { fs.linkSync(aside, lockPath) } catch { /* another lock is there now: it decides */ }
    fs.rmSync(aside, { force: true })
    throw new StorageError(`${partPath} is being downloaded by another process${moved === null ? '' : ` (pid ${moved.pid})`}: wait for it or stop it (its .part resumes)`)
  }
  throw new StorageError(`cannot lock ${partPath}: ${lockPath} keeps coming back`)
}

/** Most folder entries looked at when searching `--out` for a download's working files under another name. */
const MAX_ADOPT_SCAN = 10_000

/**
 * The working files of this download left under another name (the file was renamed by its
 * sharers since an earlier run stopped): `OUT/OTHER.part` whose state `isOurs` accepts, moved to
 * `partPath` with its state, under OTHER's lock (a get running on it keeps it) and the caller's
 * lock on `partPath`. Looked for only when `partPath` does not exist; true when one was moved.
 */
function adoptRenamedPart (dir: string, partPath: string, isOurs: (otherPart: string) => boolean): boolean {
  if (fs.existsSync(partPath)) return false
  let names: string[]
  try { names = fs.readdirSync(dir) } catch { return false }
  for (const n of names.slice(0, MAX_ADOPT_SCAN)) {
    if (!n.endsWith('.part.state')) continue
    const other = path.join(dir, n.slice(0, -'.state'.length))
    if (other === partPath || !isOurs(other)) continue
    let lockPath: string
    try { lockPath = lockPart(other).lockPath } catch { continue } // (being downloaded: not ours to move)
    try {
      if (lstatOrNull(other)?.isFile() !== true || fs.existsSync(partPath)) continue
      fs.renameSync(other, partPath)
      try { fs.renameSync(`${other}.state`, `${partPath}.state`) } catch { /* the .part alone: resumes nothing */ }
      return true
    } catch {
      continue
    } finally {
      fs.rmSync(lockPath, { force: true })
    }
  }
  return false
}

/** `p`'s own stat (a link not followed), or null when there is nothing there. */
function lstatOrNull (p: string): fs.Stats | null {
  try { return fs.lstatSync(p) } catch { return null }
}

/** Are both the same file (device and inode)? */
function sameInode (a: fs.Stats | null, b: fs.Stats | null): boolean {
  return a !== null && b !== null && a.dev === b.dev && a.ino === b.ino
}

/**
 * A get stopped between naming its verified file and removing its .part (a SIGKILL, a power cut)
 * left the .part as a second name of the final file, with its state and lock: every later get of
 * it said "already exists" and they stayed for good. Removed here (under the lock, when no live
 * get holds it); the named file is the verified download.
 */
function leftOfCommit (partPath: string, final: fs.Stats, fileId?: string): void {
  // (the .part as a second name of the file; or, knowing the file, already gone with its state left)
  const left = (): boolean => {
    const part = lstatOrNull(partPath)
    return part === null ? fileId !== undefined && stateFileId(partPath) === fileId : part.isFile() && sameInode(part, final)
  }
  if (!left()) return
  let lockPath: string
  try { lockPath = lockPart(partPath).lockPath } catch { return } // (a live get holds it: its business)
  try {
    if (left()) { // (looked at again under the lock)
      for (const p of [partPath, `${partPath}.state`, `${partPath}.state.tmp`]) {
        try { fs.rmSync(p, { force: true }) } catch { /* left */ }
      }
    }
  } finally { fs.rmSync(lockPath, { force: true }) }
}

/**
 * A verified copy of file `fileId` is at `dir/name` (`final`): the working files a get of it that
 * was stopped while naming it left (after the .part got its second name: the .part still there as
 * that name, or already gone, with the state and the lock) are removed, under the lock, when no
 * live get holds it (`leftOfCommit`). A get run again found the copy, was done at once, and left
 * them for good (a lock naming a pid that was since reused then refused every later get of the
 * name). Another download's .part (another version of the file) and a state naming another file
 * are left.
 */
export function tidyAfterCommit (dir: string, name: string, fileId: string, final: fs.Stats): void {
  const { folders, base } = nameParts(name)
  leftOfCommit(path.join(dir, ...folders, `${partStem(base, fileId)}.part`), final, fileId)
}

/**
 * A lock's "pid mark", read without blocking or following a link (a FIFO or a link planted
 * there would hang or redirect the read).
 */
function readLock (lockPath: string): LockInfo {
  const fd = fs.openSync(lockPath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW)
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw new Error(`${lockPath} is not a regular file`)
    const b = Buffer.alloc(512)
    const n = fs.readSync(fd, b, 0, b.length, 0)
    const raw = b.subarray(0, n).toString('utf8')
    const [p, mark, space, start] = raw.trim().split(/\s+/)
    return { pid: Number(p), mark: mark ?? '', space: space ?? PID_SPACE, start: start ?? '', mtimeMs: st.mtimeMs, raw }
  } finally { fs.closeSync(fd) }
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
