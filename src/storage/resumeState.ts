import fs from 'node:fs'
import type { FileMetaData } from '../protocol/messages'

/**
 * Which pieces of a `.part` are written and verified: `NAME.part.state`, a small JSON file
 * beside it, so a download killed at any point resumes with only the rest to fetch. Saved
 * atomically (write a temporary file, rename). A state that does not match the file (another
 * id, size or segmentation) is ignored.
 */
export interface ResumeState { fileId: string, size: number, blockSize: number, pieces: number, have: string }

const MAX_STATE_BYTES = 4 * 1024 * 1024

export function statePath (partPath: string): string { return `${partPath}.state` }

/** The state beside `partPath` as written (null: none, unreadable, not JSON). */
function readState (partPath: string): Partial<ResumeState> | null {
  try {
    const s = JSON.parse(readSmallFile(statePath(partPath), MAX_STATE_BYTES)) as unknown
    return typeof s === 'object' && s !== null ? s as Partial<ResumeState> : null
  } catch {
    return null
  }
}

/** The file id the state beside `partPath` names (whatever segmentation it was cut by); null when there is no readable state. */
export function stateFileId (partPath: string): string | null {
  const id = readState(partPath)?.fileId
  return typeof id === 'string' ? id : null
}

/** The verified pieces recorded for `meta`, or null when there is no usable state. */
export function loadState (partPath: string, meta: FileMetaData): Uint8Array | null {
  try {
    const s = readState(partPath)
    if (s === null || s.fileId !== meta.hash || s.size !== meta.size || s.blockSize !== meta.blockSize || s.pieces !== meta.pieces || typeof s.have !== 'string') return null
    const bits = Buffer.from(s.have, 'base64')
    if (bits.length !== Math.ceil(meta.pieces / 8)) return null
    return new Uint8Array(bits)
  } catch {
    return null // none, unreadable or not JSON: start from nothing
  }
}

/**
 * A regular file's text, read without following a link or blocking (a FIFO put at that name
 * hung a get for good, deaf to Ctrl-C), at most `max` bytes; throws otherwise.
 */
function readSmallFile (p: string, max: number): string {
  const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW)
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile() || st.size > max) throw new Error(`${p} is not a state file`)
    const b = Buffer.alloc(st.size)
    let n = 0
    while (n < b.length) { const k = fs.readSync(fd, b, n, b.length - n, n); if (k <= 0) break; n += k }
    return b.subarray(0, n).toString('utf8')
  } finally { fs.closeSync(fd) }
}

export function saveState (partPath: string, meta: FileMetaData, have: Uint8Array): void {
  const p = statePath(partPath)
  const tmp = `${p}.tmp`
  const s: ResumeState = { fileId: meta.hash, size: meta.size, blockSize: meta.blockSize, pieces: meta.pieces, have: Buffer.from(have).toString('base64') }
  const json = JSON.stringify(s)
  try {
    // a new file, never one found at that name: whoever can write to the folder could have put a
    // symlink there, and writing through it would overwrite what it points to
    fs.rmSync(tmp, { force: true })
    fs.writeFileSync(tmp, json, { flag: 'wx' })
    fs.renameSync(tmp, p)
  } catch (err) {
    fs.rmSync(tmp, { force: true }) // (a full disk leaves it empty: nothing to keep)
    // a full disk has no block for a new file: the state (the same length for a given file) is
    // overwritten in place, in the blocks it has (a crash in the middle of it costs the resume,
    // not data: a state that does not parse is ignored)
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' || !overwriteInPlace(p, json)) throw err
  }
}

function overwriteInPlace (p: string, json: string): boolean {
  let fd: number
  try { fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK) } catch { return false }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile() || st.size !== Buffer.byteLength(json)) return false
    fs.writeSync(fd, json, 0)
    return true
  } catch {
    return false
  } finally { fs.closeSync(fd) }
}

/**
 * Remove the state and its temporary, as far as possible: a name that cannot be removed (a
 * folder put there) is left, never an error (after a commit, the download is done and verified:
 * a state left beside no .part is ignored by the next run).
 */
export function removeState (partPath: string): void {
  for (const p of [statePath(partPath), `${statePath(partPath)}.tmp`]) {
    try { fs.rmSync(p, { force: true }) } catch { /* left */ }
  }
}
