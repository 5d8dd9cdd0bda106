import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { lastValueFrom } from 'rxjs'
import { FileSink } from '../../src/storage/fileSink'
import { loadState } from '../../src/storage/resumeState'
import { hasBit } from '../../src/peer/picker'

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

  it.each([['the .part', 'part'], ['the output folder', 'folder']])('%s removed during the download: the next write after the state\'s save fails with ERR_STORAGE (the whole file was fetched, then refused its name)', async (_what, which) => {
    const out = path.join(dir, 'out')
    const piece = Buffer.alloc(BLOCK, 7)
    const sink = new FileSink(meta, out)
    try {
      await lastValueFrom(sink.write(piece, 0), { defaultValue: undefined })
      sink.stored(0, piece)
      if (which === 'part') fs.rmSync(path.join(out, 'f.bin.part'))
      else fs.rmSync(out, { recursive: true })
      await new Promise((r) => setTimeout(r, 700)) // (the state is saved half a second after a piece)
      await expect(lastValueFrom(sink.write(piece, BLOCK), { defaultValue: undefined })).rejects.toMatchObject({ code: 'ERR_STORAGE', message: expect.stringMatching(/f\.bin\.part was removed during the download/) })
    } finally { sink.close() }
    // nothing left behind (a state of a .part that is gone describes nothing)
    expect(fs.existsSync(out) ? fs.readdirSync(out) : []).toEqual([])
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

  it('a .part found without a state for this file (another program\'s partial download, a user\'s file) is refused and left as it was: not resized, written, renamed or removed', () => {
    const theirs = Buffer.alloc(1234, 1)
    fs.writeFileSync(path.join(dir, 'f.bin.part'), theirs)
    expect(() => new FileSink(meta, dir)).toThrow(expect.objectContaining({ code: 'ERR_STORAGE', message: expect.stringMatching(/f\.bin\.part already exists and is not an earlier run of this download/) }))
    // a state for another file does not make it ours either
    fs.writeFileSync(path.join(dir, 'f.bin.part.state'), JSON.stringify({ fileId: 'b'.repeat(64), size: 1234, blockSize: BLOCK, pieces: 1, have: 'AA==' }))
    expect(() => new FileSink(meta, dir)).toThrow(/not an earlier run/)
    expect(fs.readFileSync(path.join(dir, 'f.bin.part'))).toEqual(theirs)
    expect(fs.readdirSync(dir).sort()).toEqual(['f.bin.part', 'f.bin.part.state']) // (no lock left behind)
    // a FIFO at that name is neither opened for good nor removed
    fs.rmSync(path.join(dir, 'f.bin.part')); fs.rmSync(path.join(dir, 'f.bin.part.state'))
    execFileSync('mkfifo', [path.join(dir, 'f.bin.part')])
    expect(() => new FileSink(meta, dir)).toThrow(expect.objectContaining({ code: 'ERR_STORAGE' }))
    expect(fs.lstatSync(path.join(dir, 'f.bin.part')).isFIFO()).toBe(true)
  })

  it('a .part with no state but the lock of a get that is gone (killed before it saved its first state) is a get\'s working file: taken, and started over', () => {
    fs.writeFileSync(path.join(dir, 'f.bin.part'), Buffer.alloc(meta.size, 1))
    const dead = spawnSync(process.execPath, ['-e', '0']).pid as number // exited: its pid is free
    fs.writeFileSync(path.join(dir, 'f.bin.part.lock'), `${dead}\n`)
    const sink = new FileSink(meta, dir)
    expect(sink.present).toEqual([])
    sink.close()
  })

  it('a stale lock does not make another version\'s .part ours: a get of NAME whose state names another file (a get of an older NAME, killed) is refused, and its .part and state are left as they were', async () => {
    const other = { ...meta, hash: 'b'.repeat(64), size: 5 * BLOCK, pieces: 5 }
    const older = new FileSink(other, dir)
    const piece = Buffer.alloc(BLOCK, 7)
    await lastValueFrom(older.write(piece, BLOCK), { defaultValue: undefined })
    older.stored(BLOCK, piece)
    older.close()
    const dead = spawnSync(process.execPath, ['-e', '0']).pid as number // as if killed: its lock stays
    fs.writeFileSync(path.join(dir, 'f.bin.part.lock'), `${dead}\n`)
    expect(() => new FileSink(meta, dir)).toThrow(/not an earlier run of this download/)
    expect(fs.readdirSync(dir).sort()).toEqual(['f.bin.part', 'f.bin.part.state'])
    expect(fs.statSync(path.join(dir, 'f.bin.part')).size).toBe(other.size)
    const back = new FileSink(other, dir)
    expect(back.present).toEqual([1])
    back.close()
  })

  it('a .part whose state names this file under another segmentation is this download\'s: taken, and started over', () => {
    fs.writeFileSync(path.join(dir, 'f.bin.part'), Buffer.alloc(meta.size, 1))
    fs.writeFileSync(path.join(dir, 'f.bin.part.state'), JSON.stringify({ fileId: meta.hash, size: meta.size, blockSize: BLOCK / 2, pieces: 6, have: '/w==' }))
    const sink = new FileSink(meta, dir)
    expect(sink.present).toEqual([])
    sink.close()
  })

  it('a final check that found no bad piece forgets every piece but keeps the state, empty: the next run starts over (a .part with no state is refused: it may be another program\'s)', async () => {
    const pieces = [Buffer.alloc(BLOCK, 1), Buffer.alloc(BLOCK, 2), Buffer.alloc(BLOCK, 3)]
    const sink = new FileSink(meta, dir)
    for (let i = 0; i < 3; i++) { await lastValueFrom(sink.write(pieces[i], i * BLOCK), { defaultValue: undefined }); sink.stored(i * BLOCK, Buffer.from(pieces[i])) }
    sink.discardState()
    sink.close()
    const again = new FileSink(meta, dir)
    expect(again.present).toEqual([])
    again.close()
  })

  it('a .part of this download truncated between runs (or during one, before a refetch round) keeps the pieces before the cut; only those past it go again', async () => {
    const n = 8
    const pieces = Array.from({ length: n }, (_, i) => Buffer.alloc(BLOCK, i + 1))
    const hashes = Buffer.concat(pieces.map((p) => createHash('sha256').update(p).digest()))
    const m = { name: 'c.bin', hash: createHash('sha256').update(Buffer.concat(pieces)).digest('hex'), size: n * BLOCK, blockSize: BLOCK, pieces: n }
    const first = new FileSink(m, dir)
    for (let i = 1; i < n; i++) { await lastValueFrom(first.write(pieces[i], i * BLOCK), { defaultValue: undefined }); first.stored(i * BLOCK, Buffer.from(pieces[i])) }
    first.close()
    const again = new FileSink(m, dir)
    fs.truncateSync(path.join(dir, 'c.bin.part'), 4 * BLOCK + 100) // another program: pieces 4..7 gone (4 cut short), 1..3 intact
    await lastValueFrom(again.write(pieces[0], 0), { defaultValue: undefined })
    again.stored(0, Buffer.from(pieces[0]))
    expect(await lastValueFrom(again.digest())).toBe('')
    expect(await lastValueFrom(again.verifyStored(hashes))).toBe(4)
    again.close()
    const round2 = new FileSink(m, dir) // the refetch round (or the next get)
    expect(round2.present).toEqual([0, 1, 2, 3])
    expect(fs.statSync(path.join(dir, 'c.bin.part')).size).toBe(m.size)
    round2.close()
    // cut between runs, with the state still listing what was past the cut: those are not claimed,
    // and the state says so at once (the .part has its full size again: a get killed now must not
    // leave zeros listed as pieces)
    fs.truncateSync(path.join(dir, 'c.bin.part'), 2 * BLOCK)
    const round3 = new FileSink(m, dir)
    expect(round3.present).toEqual([0, 1])
    const saved = loadState(path.join(dir, 'c.bin.part'), m) as Uint8Array
    expect([0, 1, 2, 3, 4, 5, 6, 7].filter((i) => hasBit(saved, i))).toEqual([0, 1])
    round3.close()
  })

  it('a resumed .part truncated by another program while the download runs: the whole-file digest comes out empty (the final check then finds what changed), in this thread and in the hash worker; no crash (SIGBUS), no error a peer would be blamed for', async () => {
    for (const big of [false, true]) {
      const block = big ? 1024 * 1024 : BLOCK
      const n = big ? 40 : 3
      const pieces = Array.from({ length: n }, (_, i) => Buffer.alloc(block, i + 1))
      const m = { name: `t${n}.bin`, hash: createHash('sha256').update(Buffer.concat(pieces)).digest('hex'), size: n * block, blockSize: block, pieces: n }
      const first = new FileSink(m, dir)
      for (let i = 1; i < n; i++) { // all but the first piece: the resume reads them back when piece 0 lands
        await lastValueFrom(first.write(pieces[i], i * block), { defaultValue: undefined })
        first.stored(i * block, Buffer.from(pieces[i]))
      }
      first.close()
      const again = new FileSink(m, dir)
      expect(again.present.length).toBe(n - 1)
      fs.truncateSync(path.join(dir, `t${n}.bin.part`), 0) // another program
      await lastValueFrom(again.write(pieces[0], 0), { defaultValue: undefined })
      again.stored(0, Buffer.from(pieces[0]))
      expect(await lastValueFrom(again.digest())).toBe('')
      again.close()
    }
  })
})
