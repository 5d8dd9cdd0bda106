import { firstValueFrom } from 'rxjs'
import { createHash } from 'node:crypto'
import { OrderedHasher } from '../../src/storage/orderedHasher'
import type { PageSource } from '../../streams/readPages'

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** Deterministic pseudo-random numbers (xorshift32). */
function prng (seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s }
}

function content (n: number, seed = 1): Buffer {
  const rand = prng(seed)
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = rand() & 0xff
  return b
}

/** The pieces of `buf`: [offset, bytes] with the last one short. */
function pieces (buf: Buffer, blockSize: number): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = []
  for (let o = 0; o < buf.length; o += blockSize) out.push([o, buf.subarray(o, o + blockSize)])
  return out
}

function shuffled<T> (xs: T[], seed: number): T[] {
  const rand = prng(seed)
  const a = [...xs]
  for (let i = a.length - 1; i > 0; i--) {
    const j = rand() % (i + 1)
    const t = a[i]; a[i] = a[j]; a[j] = t
  }
  return a
}

/** A PageSource over a Buffer that records every read, the way MappedFile serves one. */
function diskOf (buf: Buffer): { source: () => PageSource, reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = []
  const src: PageSource = {
    size: buf.length,
    view: (o, l) => { reads.push([o, l]); return [buf.subarray(o, o + l)] },
  }
  return { source: () => src, reads }
}

const noDisk = (): PageSource => { throw new Error('the disk must not be read') }

const SIZE = 100_000
const BLOCK = 16_384
const file = content(SIZE)
const want = sha256(file)
const all = pieces(file, BLOCK) // 7 pieces, the last 1_696 bytes

describe('OrderedHasher', () => {
  it('hashes in-order pieces straight from their buffers, never reading the disk', async () => {
    const h = new OrderedHasher(SIZE, noDisk)
    for (const [o, d] of all) {
      h.add(o, d)
      expect(h.hashed).toBe(Math.min(SIZE, o + BLOCK))
    }
    expect(await firstValueFrom(h.digest())).toBe(want)
  })

  it('hashes pieces added in reverse order (held in memory)', async () => {
    const h = new OrderedHasher(SIZE, noDisk)
    for (const [o, d] of [...all].reverse()) h.add(o, d)
    expect(h.hashed).toBe(SIZE)
    expect(await firstValueFrom(h.digest())).toBe(want)
  })

  it.each([1, 2, 3, 4, 5, 6])('hashes pieces added in random order (seed %i)', async (seed) => {
    const small = pieces(file, 4096) // 25 pieces
    const h = new OrderedHasher(SIZE, noDisk)
    for (const [o, d] of shuffled(small, seed)) h.add(o, d)
    expect(await firstValueFrom(h.digest())).toBe(want)
  })

  it('keeps the hashed prefix contiguous: nothing past a gap counts', async () => {
    const h = new OrderedHasher(SIZE, noDisk)
    h.add(all[0][0], all[0][1])
    h.add(all[2][0], all[2][1])
    h.add(all[3][0], all[3][1])
    expect(h.hashed).toBe(BLOCK)
    h.add(all[1][0], all[1][1])
    expect(h.hashed).toBe(4 * BLOCK)
  })

  it('with holdBytes = 0 reads every out-of-order piece back from the disk, and still matches', async () => {
    const disk = diskOf(file)
    const h = new OrderedHasher(SIZE, disk.source, 0)
    for (const [o, d] of [...all].reverse()) h.add(o, d)
    expect(await firstValueFrom(h.digest())).toBe(want)
    // piece 0 arrived at the cursor; pieces 1..6 were re-read, in order
    expect(disk.reads).toEqual(all.slice(1).map(([o, d]) => [o, d.length]))
  })

  it.each([1, 2, 3])('with holdBytes = 0 in random order (seed %i)', async (seed) => {
    const disk = diskOf(file)
    const h = new OrderedHasher(SIZE, disk.source, 0)
    for (const [o, d] of shuffled(all, seed)) h.add(o, d)
    expect(await firstValueFrom(h.digest())).toBe(want)
  })

  it('holds up to holdBytes and spills the rest to the disk path', async () => {
    const disk = diskOf(file)
    const h = new OrderedHasher(SIZE, disk.source, 2 * BLOCK)
    // pieces 1 and 2 fit in the hold budget, 3..6 do not
    for (const [o, d] of all.slice(1)) h.add(o, d)
    expect(disk.reads).toEqual([])
    h.add(all[0][0], all[0][1])
    expect(await firstValueFrom(h.digest())).toBe(want)
    expect(disk.reads.map(([o]) => o)).toEqual([3, 4, 5, 6].map((i) => i * BLOCK))
  })

  it('frees the hold budget as held pieces are hashed', async () => {
    const disk = diskOf(file)
    const h = new OrderedHasher(SIZE, disk.source, BLOCK)
    h.add(all[1][0], all[1][1]) // held
    h.add(all[0][0], all[0][1]) // drains 0 and 1
    h.add(all[3][0], all[3][1]) // held again: the budget was given back
    h.add(all[2][0], all[2][1])
    expect(disk.reads).toEqual([])
    for (const [o, d] of all.slice(4)) h.add(o, d)
    expect(await firstValueFrom(h.digest())).toBe(want)
  })

  it('reads pieces announced with addOnDisk (a resumed download) when the cursor reaches them', async () => {
    const disk = diskOf(file)
    const h = new OrderedHasher(SIZE, disk.source)
    // pieces 0, 2, 5 were on disk from an earlier run; the rest arrive now out of order
    for (const i of [5, 2, 0]) h.addOnDisk(all[i][0], all[i][1].length)
    expect(h.hashed).toBe(BLOCK)
    for (const i of [6, 4, 3, 1]) h.add(all[i][0], all[i][1])
    expect(await firstValueFrom(h.digest())).toBe(want)
    expect(disk.reads).toEqual([0, 2, 5].map((i) => [all[i][0], all[i][1].length]))
  })

  it('hashes a file entirely on disk', async () => {
    const disk = diskOf(file)
    const h = new OrderedHasher(SIZE, disk.source, 0)
    for (const [o, d] of shuffled(all, 9)) h.addOnDisk(o, d.length)
    expect(await firstValueFrom(h.digest())).toBe(want)
  })

  it('accepts views split across mapping windows', async () => {
    const src: PageSource = {
      size: SIZE,
      // two views per read, as MappedFile returns across a window boundary
      view: (o, l) => [file.subarray(o, o + (l >> 1)), file.subarray(o + (l >> 1), o + l)],
    }
    const h = new OrderedHasher(SIZE, () => src, 0)
    for (const [o, d] of [...all].reverse()) h.add(o, d)
    expect(await firstValueFrom(h.digest())).toBe(want)
  })

  it('ignores duplicates of pieces already hashed', async () => {
    const h = new OrderedHasher(SIZE, noDisk)
    h.add(all[0][0], all[0][1])
    h.add(all[0][0], Buffer.alloc(BLOCK, 0xaa)) // a second copy, even a wrong one, is not hashed again
    h.addOnDisk(all[0][0], BLOCK)
    for (const [o, d] of all.slice(1)) { h.add(o, d); h.add(o, d) }
    expect(await firstValueFrom(h.digest())).toBe(want)
  })

  it('ignores duplicates of pieces still waiting (held or on disk)', async () => {
    const disk = diskOf(file)
    const h = new OrderedHasher(SIZE, disk.source, BLOCK)
    for (const [o, d] of all.slice(1)) { h.add(o, d); h.add(o, d) }
    h.addOnDisk(all[3][0], all[3][1].length)
    h.add(all[0][0], all[0][1])
    expect(await firstValueFrom(h.digest())).toBe(want)
  })

  // regression: a duplicate (normal when two peers send the same piece) was counted into the
  // hold budget twice and given back once, sending later pieces to the slower disk path
  it('a duplicate of a held piece does not use up the hold budget', async () => {
    const disk = diskOf(file)
    const h = new OrderedHasher(SIZE, disk.source, 2 * BLOCK)
    h.add(all[1][0], all[1][1])
    h.add(all[1][0], all[1][1]) // duplicate: still only BLOCK bytes held
    h.add(all[2][0], all[2][1]) // fits: 2·BLOCK held
    h.add(all[0][0], all[0][1])
    for (const [o, d] of all.slice(3)) h.add(o, d)
    expect(await firstValueFrom(h.digest())).toBe(want)
    expect(disk.reads).toEqual([])
  })

  it('hashes an empty file', async () => {
    const h = new OrderedHasher(0, noDisk)
    expect(await firstValueFrom(h.digest())).toBe(sha256(Buffer.alloc(0)))
  })

  it('digest throws RangeError while bytes are missing', async () => {
    const h = new OrderedHasher(SIZE, noDisk)
    expect(() => h.digest()).toThrow(RangeError)
    for (const [o, d] of all.slice(1)) h.add(o, d) // everything but the first piece
    expect(() => h.digest()).toThrow(RangeError)
    const h2 = new OrderedHasher(SIZE, noDisk)
    for (const [o, d] of all.slice(0, -1)) h2.add(o, d) // everything but the last piece
    expect(h2.hashed).toBe(6 * BLOCK)
    expect(() => h2.digest()).toThrow(RangeError)
  })

  it('digest throws RangeError when more bytes than the size were added', async () => {
    const h = new OrderedHasher(SIZE - 1, noDisk)
    for (const [o, d] of all) h.add(o, d)
    expect(() => h.digest()).toThrow(RangeError)
  })
})
