import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { MemoryFileStore, type FileStore } from '../../src/tracker/registry'
import { SqliteFileStore } from '../../src/tracker/sqliteStore'
import type { FileMetaData } from '../../src/protocol/messages'
import { MAX_FILE_SIZE, MAX_PIECES } from '../../src/limits'

const meta = (i: number, name = `f${i}`): FileMetaData => ({ name, hash: i.toString(16).padStart(64, '0'), size: i * 1000, blockSize: 16384, pieces: Math.ceil(i * 1000 / 16384) })

const dirs: string[] = []
afterAll(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }) })
const sqliteDir = (): string => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-store-')); dirs.push(d); return d }

/** One contract, every implementation. */
describe.each<[string, () => FileStore]>([
  ['MemoryFileStore', () => new MemoryFileStore()],
  ['SqliteFileStore', () => new SqliteFileStore(sqliteDir())],
])('%s', (_, make) => {
  it('stores, gets and counts files; a re-publish replaces, not duplicates', () => {
    const s = make()
    expect(s.get(meta(1).hash)).toBeUndefined()
    s.put(meta(1)); s.put(meta(2)); s.put(meta(1, 'renamed'))
    expect(s.size).toBe(2)
    expect(s.get(meta(1).hash)).toEqual(meta(1, 'renamed'))
    s.put({ ...meta(2), root: 'f'.repeat(64) })
    expect(s.get(meta(2).hash)).toEqual({ ...meta(2), root: 'f'.repeat(64) })
    expect(s.size).toBe(2)
    s.close?.()
  })

  it('lists in id order, in pages that continue after a key', () => {
    const s = make()
    for (const i of [5, 3, 9, 1, 7]) s.put(meta(i))
    expect(s.list(undefined, 3).map((m) => m.size)).toEqual([1000, 3000, 5000])
    expect(s.list(meta(5).hash, 3).map((m) => m.size)).toEqual([7000, 9000])
    expect(s.list(meta(9).hash, 3)).toEqual([])
    s.close?.()
  })

  it('deletes a file (an unknown one is no error): it is no longer got, listed or counted', () => {
    const s = make()
    for (const i of [1, 2, 3]) s.put(meta(i))
    s.delete(meta(2).hash)
    s.delete(meta(2).hash)
    s.delete(meta(8).hash)
    expect(s.size).toBe(2)
    expect(s.get(meta(2).hash)).toBeUndefined()
    expect(s.list(undefined, 10).map((m) => m.size)).toEqual([1000, 3000])
    s.close?.()
  })
})

describe('SqliteFileStore', () => {
  it('keeps every file across a reopen', () => {
    const dir = sqliteDir()
    const a = new SqliteFileStore(dir)
    for (let i = 1; i <= 50; i++) a.put(meta(i))
    a.close()
    a.close() // twice is safe
    const b = new SqliteFileStore(dir)
    expect(b.size).toBe(50)
    expect(b.list(undefined, 100)).toEqual(Array.from({ length: 50 }, (_, i) => meta(i + 1)))
    b.close()
  })

  it('drops on open the files bigger than a file may be (kept from before that bound, they would make every list unreadable)', () => {
    const dir = sqliteDir()
    const a = new SqliteFileStore(dir)
    a.put(meta(1))
    a.put({ name: 'huge', hash: 'ff'.repeat(32), size: MAX_FILE_SIZE + 1, blockSize: 8 << 20, pieces: MAX_PIECES + 1 })
    a.close()
    const b = new SqliteFileStore(dir)
    expect(b.size).toBe(1)
    expect(b.list(undefined, 10)).toEqual([meta(1)])
    b.close()
  })

  it('is one tracker\'s: another store of the same folder is refused at once while it is open (two trackers shared the default --data), and opens once it is closed', () => {
    const dir = sqliteDir()
    const a = new SqliteFileStore(dir)
    a.put(meta(1))
    const t0 = Date.now()
    expect(() => new SqliteFileStore(dir)).toThrow(`another tracker uses the file registry ${path.join(dir, 'tracker.db')}: give this one its own --data folder (or --memory)`)
    expect(Date.now() - t0).toBeLessThan(2_000) // (no wait for a lock that is held for good)
    a.put(meta(2))
    expect(a.list(undefined, 10)).toEqual([meta(1), meta(2)])
    a.close()
    const b = new SqliteFileStore(dir)
    expect(b.list(undefined, 10)).toEqual([meta(1), meta(2)])
    b.close()
  })

  it('a registry that is not a database is one error naming the file, with what to do', () => {
    const dir = sqliteDir()
    fs.writeFileSync(path.join(dir, 'tracker.db'), 'x'.repeat(4096))
    expect(() => new SqliteFileStore(dir)).toThrow(new RegExp(`cannot use the file registry ${path.join(dir, 'tracker.db')} \\(file is not a database\\): move it away`))
  })
})
