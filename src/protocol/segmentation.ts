import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, PAGE_SIZE, TARGET_PIECES } from '../limits'
import type { FileMetaData } from './messages'

/**
 * The tracker decides how a file is cut into pieces, once, when it is first published (piece
 * hashes depend on it).
 *
 * Rule: aim at TARGET_PIECES pieces, so a file has enough pieces to spread over many peers but
 * few enough that bitfields and bookkeeping stay small. blockSize is the smallest power of two
 * ≥ size / target, clamped to [MIN_BLOCK_SIZE, MAX_BLOCK_SIZE] (all multiples of the 4 KiB
 * page); pieces = ceil(size / blockSize). The target grows with √n, n being the nodes that can
 * seed it (the live nodes when it is published, all of which can fetch and then serve it), at
 * most 4×: more seeders get more, smaller pieces to work on in parallel.
 *
 *   1 MiB → 256 KiB × 4     64 MiB → 256 KiB × 256     1 GiB → 1 MiB × 1024     64 GiB → 8 MiB × 8192
 *   1 GiB with 16 nodes live → 256 KiB × 4096
 */
export function segment (size: number, seeders = 1): { blockSize: number, pieces: number } {
  const target = TARGET_PIECES * Math.min(4, Math.sqrt(Math.max(1, seeders)))
  let blockSize = MIN_BLOCK_SIZE
  while (blockSize < MAX_BLOCK_SIZE && blockSize * target < size) blockSize *= 2
  if (blockSize % PAGE_SIZE !== 0) throw new RangeError('block size must be a multiple of the page size')
  return { blockSize, pieces: Math.ceil(size / blockSize) }
}

export function fileMeta (name: string, hash: string, size: number, seeders = 1): FileMetaData {
  return { name, hash, size, ...segment(size, seeders) }
}
