import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, PAGE_SIZE, TARGET_PIECES } from '../../src/limits'
import { segment } from '../../src/protocol/segmentation'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

describe('segment', () => {
  it.each([
    [1 * MiB, 1, 256 * KiB, 4],
    [16 * MiB, 1, 256 * KiB, 64],
    [64 * MiB, 1, 256 * KiB, 256],
    [256 * MiB, 1, 256 * KiB, 1024],
    [1 * GiB, 1, 1 * MiB, 1024],
    [3 * GiB, 1, 4 * MiB, 768],
    [1 * GiB, 16, 256 * KiB, 4096],
    [1 * GiB, 10_000, 256 * KiB, 4096],
    [64 * GiB, 1, 8 * MiB, 8192],
  ])('cuts %d bytes (%d nodes live) into pieces of %d, %d of them', (size, seeders, blockSize, pieces) => {
    expect(segment(size, seeders)).toEqual({ blockSize, pieces })
  })

  it('pieces are page multiples within the bounds, ceil(size / blockSize) of them, and no smaller than the target needs', () => {
    for (let size = 1; size <= 4 * GiB; size = Math.ceil(size * 1.37) + 4093) {
      const { blockSize, pieces } = segment(size)
      expect(blockSize % PAGE_SIZE).toBe(0)
      expect(blockSize).toBeGreaterThanOrEqual(MIN_BLOCK_SIZE)
      expect(blockSize).toBeLessThanOrEqual(MAX_BLOCK_SIZE)
      expect(pieces).toBe(Math.ceil(size / blockSize))
      expect(pieces).toBeLessThanOrEqual(TARGET_PIECES)
      if (blockSize > MIN_BLOCK_SIZE && blockSize < MAX_BLOCK_SIZE) expect(pieces).toBeGreaterThan(TARGET_PIECES / 2)
    }
  })

  it('an empty file has no pieces', () => {
    expect(segment(0)).toEqual({ blockSize: MIN_BLOCK_SIZE, pieces: 0 })
  })
})
