import { createHash } from 'node:crypto'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import type { MappedFile } from './mappedFile'

const SLICE = 16 * 1024 * 1024

export interface FileHashes {
  /** SHA-256 of the content: the file id. */
  fileId: string
  blockSize: number
  /** SHA-256 of each piece, 32 bytes each. */
  pieceHashes: Buffer
  /** SHA-256 over the concatenated piece hashes. */
  root: string
}

/** The root over piece hashes: what the tracker keeps so leechers can check a hash list from any peer. */
export function hashRoot (pieceHashes: Buffer): string {
  return createHash('sha256').update(pieceHashes).digest('hex')
}

/**
 * The file id and the piece hashes for `blockSize`, in one pass through the mapping, a slice
 * at a time so the event loop keeps serving in between. Memory stays flat whatever the size.
 */
export async function hashFile (file: MappedFile, blockSize: number, cancelled?: () => boolean): Promise<FileHashes> {
  return await hashPass(file, blockSize, true, cancelled) as FileHashes
}

/** Piece hashes only (the file id is known): for a segmentation other than the one first hashed. */
export async function hashPieces (file: MappedFile, blockSize: number): Promise<Buffer> {
  return (await hashPass(file, blockSize, false)).pieceHashes
}

/** One pass through the file: piece hashes, and the whole-file hash when asked for. */
/** (`cancelled` is asked at each pause for the event loop: true ends the pass with an error) */
async function hashPass (file: MappedFile, blockSize: number, withWhole: boolean, cancelled?: () => boolean): Promise<Omit<FileHashes, 'fileId'> & { fileId?: string }> {
  const whole = withWhole ? createHash('sha256') : null
  const pieces = Math.ceil(file.size / blockSize)
  const pieceHashes = Buffer.alloc(pieces * 32)
  let sinceYield = 0
  // read (pread into one buffer), not through the mapping: a file truncated meanwhile (a `cp` over
  // it) is then an error for this file, not SIGBUS for the process
  const buf = Buffer.allocUnsafe(Math.min(blockSize, Math.max(1, file.size)))
  for (let i = 0; i < pieces; i++) {
    const off = i * blockSize
    const v = file.read(off, Math.min(blockSize, file.size - off), buf)
    whole?.update(v)
    sinceYield += v.length
    createHash('sha256').update(v).digest().copy(pieceHashes, i * 32)
    if (sinceYield >= SLICE) {
      sinceYield = 0
      await yieldToLoop()
      if (cancelled?.() === true) throw new Error(`hashing ${file.path} was called off`)
    }
  }
  file.checkSize()
  const hashes = { blockSize, pieceHashes, root: hashRoot(pieceHashes) }
  return whole === null ? hashes : { fileId: whole.digest('hex'), ...hashes }
}
