import fs from 'node:fs'
import path from 'node:path'
import { log } from '../log'
import { MAX_FILE_SIZE, MAX_FOLDER_DEPTH } from '../limits'
import { MappedFile } from '../storage/mappedFile'
import { hashFile } from '../storage/hashFile'
import { segment } from '../protocol/segmentation'
import { safeRelativeName } from '../storage/names'
import { quoted } from '../text'

/** Most files taken from one shared folder. */
export const MAX_SHARED_FILES = 10_000
/** A new or changed file is hashed only once its size and mtime held still this long (it may still be being copied in). */
export const SHARE_SETTLE_MS = 1000
/** File-system events are gathered this long before a scan. */
export const SHARE_DEBOUNCE_MS = 200
/** The folder is rescanned this often anyway: watch events can be missed (overflow, network file systems). */
export const SHARE_RESCAN_MS = 5000
/** ...but, while watch events come, no sooner than this many times what the last listing of it took (a big folder is rescanned less often: at most about 4 % of the time)... */
export const RESCAN_COST_FACTOR = 25
/** ...and at least this often. */
export const SHARE_RESCAN_MAX_MS = 60_000

/**
 * Names never shared: downloads in progress (`.part` and their `.part.state` and `.part.lock`), hidden files
 * (editors' and rsync's temporaries are dot files) and the usual temporary suffixes.
 */
export function isShareable (name: string): boolean {
  if (name.startsWith('.')) return false
  return !/(\.part|\.part\.state|\.part\.lock|~|\.tmp|\.swp|\.crdownload)$/i.test(name)
}

/** The name a file at `p` under the shared folder `dir` is published under: its path in the folder, `/` between parts (`train/0001.png`). */
export function shareName (dir: string, p: string): string {
  return path.relative(dir, p).split(path.sep).join('/')
}

/**
 * Why a file is not shared: its contents are, under another name (a file id is shared under one
 * name; a get of its folder does not write this one).
 */
export const sameAs = (name: string): string => `same contents as ${quoted(name)}, shared under that name only`

/** Why a file over MAX_FILE_SIZE is not shared (it is not even hashed). */
const TOO_BIG = `larger than ${MAX_FILE_SIZE / 2 ** 40} TiB, the most a file may be (pieces × the largest block)`

/** Told of a path under a shared folder that is not shared, and why (the caller says it once per path). */
export type OnSkip = (path: string, reason: string) => void

const warnSkip: OnSkip = (p, reason) => log.child({ module: 'share' }).warn({ path: p, reason }, 'not shared')

export interface LocalFile {
  path: string
  name: string
  size: number
  fileId: string
  file: MappedFile
  /** Piece hashes for `blockSize` (the segmentation the tracker will most likely choose). */
  blockSize: number
  pieceHashes: Buffer
  root: string
}

/**
 * Every regular file under `dir` (recursively; symlinks and special files are skipped), mapped
 * and hashed. A file is published under its base name; names that would be unsafe on a
 * leecher's disk are skipped with a warning, and identical contents are shared once.
 */
export async function scanShare (dir: string, onFile?: (f: LocalFile) => void, onSkip: OnSkip = warnSkip): Promise<LocalFile[]> {
  const l = log.child({ module: 'share' })
  const out: LocalFile[] = []
  const seen = new Map<string, string>() // file id → the name it is shared under
  let full = false
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > MAX_FOLDER_DEPTH) { onSkip(d, 'folder nested too deep'); return }
    let entries: fs.Dirent[]
    try {
      entries = await fs.promises.readdir(d, { withFileTypes: true })
    } catch (err) {
      // the shared folder itself must be readable; a subfolder that is not (no permission) is skipped
      if (depth === 0) throw err
      onSkip(d, `cannot read folder: ${(err as Error).message}`)
      return
    }
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    for (const e of entries) {
      if (out.length >= MAX_SHARED_FILES) {
        // (said once, not once per folder level the walk returns through)
        if (!full) l.warn({ dir }, `more than ${MAX_SHARED_FILES} files: the rest are not shared`)
        full = true
        return
      }
      const p = path.join(d, e.name)
      // (a hidden or temporary folder is not shared, as such a file is not: .git, .cache)
      if (e.isDirectory()) { if (isShareable(e.name)) await walk(p, depth + 1); continue }
      if (!e.isFile()) continue
      if (!isShareable(e.name)) continue // a download in progress or a temporary is not a file to share
      let name: string
      try {
        name = safeRelativeName(shareName(dir, p))
      } catch (err) {
        onSkip(p, `file name unsafe to publish: ${(err as Error).message}`)
        continue
      }
      let file: MappedFile
      try {
        // (the entry itself, and a file inside the folder: one swapped for a link since readdir is not followed)
        const st = await fs.promises.lstat(p)
        if (!st.isFile()) continue
        if (st.size > MAX_FILE_SIZE) { onSkip(p, TOO_BIG); continue }
        file = MappedFile.open(p, undefined, { under: dir, listed: st })
      } catch (err) {
        onSkip(p, `cannot open: ${(err as Error).message}`)
        continue
      }
      let h: Awaited<ReturnType<typeof hashFile>>
      try {
        h = await hashFile(file, segment(file.size).blockSize)
      } catch (err) {
        // (changed while hashed: still being copied in, or rewritten; the watcher shares it once it settles)
        file.close()
        onSkip(p, `cannot hash: ${(err as Error).message}`)
        continue
      }
      const first = seen.get(h.fileId)
      if (first !== undefined) { file.close(); onSkip(p, sameAs(first)); continue }
      seen.set(h.fileId, name)
      const f: LocalFile = { path: p, name, size: file.size, file, ...h }
      out.push(f)
      onFile?.(f)
    }
  }
  await walk(dir, 0)
  return out
}

/**
 * A version of a file on disk: size, mtime and ctime (a rewrite in place that kept the size and
 * set the mtime back, as `rsync --inplace -t`, `cp -p` or `touch -r` do, changes the ctime, which
 * nothing sets back: comparing size and mtime alone, such a file was served under its old id for
 * good), and `dev`/`ino`, which tell a renamed file.
 */
export interface FileStamp { size: number, mtimeMs: number, ctimeMs?: number, dev?: number, ino?: number }

/** The stamp alone, of a stat or of anything that carries one (a listed entry). */
export const stampOf = (st: FileStamp): FileStamp => ({ size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, dev: st.dev, ino: st.ino })

/** Both stamps are the same version of the file (a rename, which changes the ctime, is told apart by `planShare`). */
export const sameVersion = (a: FileStamp, b: FileStamp): boolean => sameWrite(a, b) && a.ctimeMs === b.ctimeMs

/**
 * Both stamps are the same file (inode, where known) with the same size and mtime: it changed at
 * most in place with its mtime set back, or only its metadata (a chmod, a link: the ctime alone
 * changes). Another inode is another file, even a copy with the same times (rsync without
 * --inplace, `cp -p` then `mv`): the one served is gone.
 */
const sameWrite = (a: FileStamp, b: FileStamp): boolean => a.size === b.size && a.mtimeMs === b.mtimeMs &&
  (a.ino === undefined || b.ino === undefined || (a.ino === b.ino && a.dev === b.dev))

/** A candidate file of a shared folder, as listed (not yet hashed). */
export interface ShareEntry extends FileStamp { path: string, name: string }

/**
 * The shareable regular files under `dir` with their size and mtime: a cheap listing (no
 * hashing) for the watcher to compare with what it published. At most `max` files.
 */
export async function listShare (dir: string, max = MAX_SHARED_FILES, onSkip: OnSkip = () => {}): Promise<ShareEntry[]> {
  const out: ShareEntry[] = []
  const gone = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT'
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > MAX_FOLDER_DEPTH) { onSkip(d, 'folder nested too deep'); return }
    let entries: fs.Dirent[]
    try {
      entries = await fs.promises.readdir(d, { withFileTypes: true })
    } catch (err) {
      if (!gone(err)) onSkip(d, `cannot read folder: ${(err as Error).message}`) // (not one removed while we walk)
      return
    }
    for (const e of entries) {
      if (out.length >= max) return
      const p = path.join(d, e.name)
      // (a hidden or temporary folder is not shared, as such a file is not: .git, .cache)
      if (e.isDirectory()) { if (isShareable(e.name)) await walk(p, depth + 1); continue }
      if (!e.isFile() || !isShareable(e.name)) continue
      let name: string
      try {
        name = safeRelativeName(shareName(dir, p))
      } catch (err) {
        onSkip(p, `file name unsafe to publish: ${(err as Error).message}`)
        continue
      }
      try {
        // (the entry itself: a file swapped for a symlink since readdir is not followed)
        const st = await fs.promises.lstat(p)
        if (!st.isFile()) continue
        if (st.size > MAX_FILE_SIZE) { onSkip(p, TOO_BIG); continue }
        out.push({ path: p, name, ...stampOf(st) })
      } catch { /* gone since readdir */ }
    }
  }
  await walk(dir, 0)
  return out
}

/** What the watcher knows of a path: the stamp it hashed, its file id (null: could not be hashed), and whether it is the copy shared (not a duplicate). */
export interface KnownFile extends FileStamp { fileId: string | null, shared: boolean }

export interface SharePlan {
  /** Known files that moved to another path of the folder (the same inode, size and mtime): follow them, nothing to hash or withdraw. */
  rename: Array<{ from: string, to: ShareEntry }>
  /** Settled new or changed files: hash and publish them. */
  hash: ShareEntry[]
  /** Paths gone or changed since they were hashed: withdraw what was published for them. */
  withdraw: string[]
  /**
   * Known files whose ctime alone changed, settled: a chmod, a hard link, or a rewrite in place
   * that set the mtime back. Hashed again; withdrawn only if their id changed (withdrawn at once,
   * a `chmod -R` on a share dropped every upload and hashed it all again).
   */
  recheck: ShareEntry[]
  /** New or changed files still settling: what was seen now, to compare with at the next scan. */
  settling: Map<string, ShareEntry>
}

/**
 * Compare a listing with what is known (pure: time comes in as `now`). A new or changed file is
 * ready once the previous scan saw the same size and mtime and it was last written at least
 * `settleMs` ago: a file still being copied in is never published half-written.
 */
export function planShare (known: ReadonlyMap<string, KnownFile>, settling: ReadonlyMap<string, ShareEntry>, listing: readonly ShareEntry[], now: number, settleMs = SHARE_SETTLE_MS): SharePlan {
  const plan: SharePlan = { rename: [], hash: [], withdraw: [], recheck: [], settling: new Map() }
  const listed = new Map(listing.map((e) => [e.path, e]))
  // a known path gone from the listing whose inode is listed under a path not known: renamed
  // (`mv`: the same file, so a download from it goes on; hashed again, it was withdrawn meanwhile
  // and the downloads from it failed); the same size and mtime too, or it was written since (not
  // the ctime: a rename changes it)
  const inode = (x: { dev?: number, ino?: number }): string | null => x.dev === undefined || x.ino === undefined ? null : `${x.dev}:${x.ino}`
  const gone = new Map<string, { path: string, k: KnownFile }>()
  for (const [p, k] of known) {
    const key = inode(k)
    if (key !== null && !listed.has(p)) gone.set(key, { path: p, k })
  }
  const moved = new Set<string>() // new paths that are renamed known files
  if (gone.size > 0) {
    for (const e of listing) {
      const key = inode(e)
      const g = key === null || known.has(e.path) ? undefined : gone.get(key)
      if (g === undefined || g.k.size !== e.size || g.k.mtimeMs !== e.mtimeMs) continue
      gone.delete(key as string)
      plan.rename.push({ from: g.path, to: e })
      moved.add(e.path)
    }
  }
  const renamedFrom = new Set(plan.rename.map((r) => r.from))
  for (const [p, k] of known) {
    if (renamedFrom.has(p)) continue
    const e = listed.get(p)
    if (e === undefined || !sameWrite(e, k)) plan.withdraw.push(p)
  }
  for (const e of listing) {
    if (moved.has(e.path)) continue
    const k = known.get(e.path)
    if (k !== undefined && sameVersion(k, e)) continue
    const before = settling.get(e.path)
    if (before !== undefined && sameVersion(before, e) && now - Math.max(e.mtimeMs, e.ctimeMs ?? 0) >= settleMs) (k !== undefined && sameWrite(k, e) ? plan.recheck : plan.hash).push(e)
    else plan.settling.set(e.path, e)
  }
  return plan
}
