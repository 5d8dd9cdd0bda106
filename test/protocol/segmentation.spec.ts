import { BASE_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, MIN_PIECES, PAGE_SIZE } from '../../src/limits'
import { segment } from '../../src/protocol/segmentation'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

describe('segment', () => {
  it.each([
    [1 * MiB, 1, 64 * KiB, 16],
    [16 * MiB, 1, 64 * KiB, 256],
    [24 * MiB, 1, 64 * KiB, 384],
    [32 * MiB, 1, 128 * KiB, 256],
    [64 * MiB, 1, 256 * KiB, 256],
    [256 * MiB, 1, 256 * KiB, 1024],
    [1 * GiB, 1, 1 * MiB, 1024],
    [3 * GiB, 1, 4 * MiB, 768],
    [1 * GiB, 16, 256 * KiB, 4096],
    [64 * GiB, 1, 8 * MiB, 8192],
  ])('cuts %d bytes (%d seeders) into pieces of %d, %d of them', (size, seeders, blockSize, pieces) => {
    expect(segment(size, seeders)).toEqual({ blockSize, pieces })
  })

  it('gives a file at least MIN_PIECES pieces where pieces of MIN_BLOCK_SIZE allow, and keeps pieces of at least BASE_BLOCK_SIZE otherwise', () => {
    for (let size = 1; size <= 512 * MiB; size = Math.ceil(size * 1.37) + 4093) {
      const { blockSize, pieces } = segment(size)
      expect(blockSize % PAGE_SIZE).toBe(0)
      expect(blockSize).toBeGreaterThanOrEqual(MIN_BLOCK_SIZE)
      expect(blockSize).toBeLessThanOrEqual(MAX_BLOCK_SIZE)
      expect(pieces).toBe(Math.ceil(size / blockSize))
      if (blockSize > MIN_BLOCK_SIZE) expect(pieces).toBeGreaterThanOrEqual(MIN_PIECES)
      if (blockSize < BASE_BLOCK_SIZE) expect(pieces).toBeLessThanOrEqual(2 * MIN_PIECES) // no smaller than it needs to be
    }
  })

  it('an empty file has no pieces', () => {
    expect(segment(0)).toEqual({ blockSize: MIN_BLOCK_SIZE, pieces: 0 })
  })
})
