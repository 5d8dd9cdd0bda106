import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { lastValueFrom } from 'rxjs'
import { FileSink } from '../../src/storage/fileSink'

const BLOCK = 16384
const meta = { name: 'f.bin', hash: 'a'.repeat(64), size: 3 * BLOCK, blockSize: BLOCK, pieces: 3 }

describe('FileSink', () => {
  let dir: string
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-sink-')) })
  afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }) })

  it('closed before any piece was stored: no .part, state or lock stays (a sparse file of the full size resumes nothing)', () => {
    const sink = new FileSink(meta, dir)
    // (the state is written at once: on a disk that fills up later it is overwritten in place)
    expect(fs.readdirSync(dir).sort()).toEqual(['f.bin.part', 'f.bin.part.lock', 'f.bin.part.state'])
    sink.close()
    sink.close()
    expect(fs.readdirSync(dir)).toEqual([])
  })

  it('closed with a stored piece: the .part and its state stay, and the next sink resumes that piece; it keeps them even if it stores nothing', async () => {
    const piece = Buffer.alloc(BLOCK, 7)
    const sink = new FileSink(meta, dir)
    await lastValueFrom(sink.write(piece, BLOCK), { defaultValue: undefined })
    sink.stored(BLOCK, piece)
    sink.close()
    expect(fs.readdirSync(dir).sort()).toEqual(['f.bin.part', 'f.bin.part.state'])
    const again = new FileSink(meta, dir)
    expect(again.present).toEqual([1])
    again.close()
    expect(fs.readdirSync(dir).sort()).toEqual(['f.bin.part', 'f.bin.part.state'])
    expect(fs.readFileSync(path.join(dir, 'f.bin.part')).subarray(BLOCK, 2 * BLOCK)).toEqual(piece)
  })

  it('verifyStored: a stored piece whose bytes changed on disk is counted and forgotten; the state keeps the others', async () => {
    const pieces = [Buffer.alloc(BLOCK, 1), Buffer.alloc(BLOCK, 2), Buffer.alloc(BLOCK, 3)]
    const hashes = Buffer.concat(pieces.map((p) => createHash('sha256').update(p).digest()))
    const sink = new FileSink(meta, dir)
    for (const i of [0, 2]) {
      await lastValueFrom(sink.write(pieces[i], i * BLOCK), { defaultValue: undefined })
      sink.stored(i * BLOCK, pieces[i])
    }
    // something else writes into piece 2 of the .part
    const fd = fs.openSync(path.join(dir, 'f.bin.part'), 'r+')
    fs.writeSync(fd, Buffer.from([9]), 0, 1, 2 * BLOCK + 100)
    fs.closeSync(fd)
    expect(await lastValueFrom(sink.verifyStored(hashes))).toBe(1)
    sink.close()
    const again = new FileSink(meta, dir)
    expect(again.present).toEqual([0])
    again.close()
  })

  it('verifyStored: what is on disk, read through the download\'s descriptor, is checked against the piece hashes (in the hash workers for a big file), or against the file id with none; the changed pieces are forgotten', async () => {
    for (const big of [false, true]) {
      const block = big ? 1024 * 1024 : BLOCK
      const n = big ? 40 : 3 // (40 MiB: the hash workers' path)
      const pieces = Array.from({ length: n }, (_, i) => Buffer.alloc(block, i + 1))
      const hashes = Buffer.concat(pieces.map((p) => createHash('sha256').update(p).digest()))
      const m = { name: `v${n}.bin`, hash: createHash('sha256').update(Buffer.concat(pieces)).digest('hex'), size: n * block, blockSize: block, pieces: n }
      const sink = new FileSink(m, dir)
      for (let i = 0; i < n; i++) {
        await lastValueFrom(sink.write(pieces[i], i * block), { defaultValue: undefined })
        sink.stored(i * block, Buffer.from(pieces[i]))
      }
      expect(await lastValueFrom(sink.digest())).toBe(m.hash)
      expect(await lastValueFrom(sink.verifyStored(hashes))).toBe(0)
      expect(await lastValueFrom(sink.verifyStored(null))).toBe(0)
      // another program writes into pieces 0 and n-1 of the .part (after they were hashed as they came)
      const fd = fs.openSync(path.join(dir, `v${n}.bin.part`), 'r+')
      fs.writeSync(fd, Buffer.from([0]), 0, 1, 5)
      fs.writeSync(fd, Buffer.from([0]), 0, 1, m.size - 1)
      fs.closeSync(fd)
      expect(await lastValueFrom(sink.verifyStored(hashes))).toBe(2)
      sink.close()
      const again = new FileSink(m, dir)
      expect(again.present).toEqual(Array.from({ length: n - 2 }, (_, i) => i + 1))
      // with no piece hashes, a changed file is wholly forgotten
      expect(await lastValueFrom(again.verifyStored(null))).toBe(n - 2)
      again.close()
    }
  })

  it('resumes the working files an earlier run left under the file\'s former name (renamed by its sharers since), and only those of this very file', async () => {
    const piece = Buffer.alloc(BLOCK, 7)
    const old = new FileSink({ ...meta, name: 'old.bin' }, dir)
    await lastValueFrom(old.write(piece, BLOCK), { defaultValue: undefined })
    old.stored(BLOCK, piece)
    old.close()
    // another file's leftovers, and a different file under the new name's neighbour: not taken
    const other = new FileSink({ ...meta, name: 'other.bin', hash: 'b'.repeat(64) }, dir)
    await lastValueFrom(other.write(piece, 0), { defaultValue: undefined })
    other.stored(0, piece)
    other.close()
    const renamed = new FileSink({ ...meta, name: 'new.bin' }, dir)
    expect(renamed.present).toEqual([1])
    renamed.close()
    expect(fs.readdirSync(dir).sort()).toEqual(['new.bin.part', 'new.bin.part.state', 'other.bin.part', 'other.bin.part.state'])
    expect(fs.readFileSync(path.join(dir, 'new.bin.part')).subarray(BLOCK, 2 * BLOCK)).toEqual(piece)
  })

  it('a .part left without its state (nothing known verified) is removed when the sink closes with nothing stored', () => {
    fs.writeFileSync(path.join(dir, 'f.bin.part'), Buffer.alloc(meta.size, 1))
    const sink = new FileSink(meta, dir)
    expect(sink.present).toEqual([])
    sink.close()
    expect(fs.readdirSync(dir)).toEqual([])
  })
})
