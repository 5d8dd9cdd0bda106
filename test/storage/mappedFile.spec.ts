import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { FileChangedError, MappedFile, openFileCount, setMaxOpenFiles } from '../../src/storage/mappedFile'
import { mappingsWaiting } from '../../src/storage/unmap'
import { MAX_OPEN_FILES, PAGE_SIZE, UNMAP_FIRST_MS } from '../../src/limits'

const WINDOW = 2 * PAGE_SIZE // 8192
const SIZE = 50_000 // 6 whole windows and a short seventh: more than the 4 kept mapped

let dir: string
const open: MappedFile[] = []

function content (n: number): Buffer {
  const b = Buffer.alloc(n)
  // a non-repeating pattern, so a view from the wrong offset can't match by chance
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 8) * 7 + (i >> 16)) & 0xff
  return b
}

function fileWith (name: string, data: Buffer): string {
  const p = path.join(dir, name)
  fs.writeFileSync(p, data)
  return p
}

function mapped (p: string, windowBytes?: number): MappedFile {
  const m = MappedFile.open(p, windowBytes)
  open.push(m)
  return m
}

const joined = (views: Buffer[]): Buffer => Buffer.concat(views)

beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-mapped-')) })
afterAll(() => {
  for (const m of open) m.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

describe('MappedFile', () => {
  const data = content(SIZE)
  let p: string
  beforeAll(() => { p = fileWith('data.bin', data) })

  it('reports the size of the file it mapped', () => {
    expect(mapped(p, WINDOW).size).toBe(SIZE)
  })

  it('views the whole file across every window boundary', () => {
    const m = mapped(p, WINDOW)
    const views = m.view(0, SIZE)
    expect(views).toHaveLength(Math.ceil(SIZE / WINDOW))
    expect(views.slice(0, -1).every((v) => v.length === WINDOW)).toBe(true)
    expect(views[views.length - 1].length).toBe(SIZE % WINDOW)
    expect(joined(views).equals(data)).toBe(true)
  })

  it('splits a range that crosses one boundary into two views', () => {
    const m = mapped(p, WINDOW)
    const views = m.view(WINDOW - 100, 300)
    expect(views.map((v) => v.length)).toEqual([100, 200])
    expect(joined(views).equals(data.subarray(WINDOW - 100, WINDOW + 200))).toBe(true)
  })

  it('serves a range ending exactly on a boundary as one view', () => {
    const m = mapped(p, WINDOW)
    const views = m.view(WINDOW, WINDOW)
    expect(views).toHaveLength(1)
    expect(views[0].equals(data.subarray(WINDOW, 2 * WINDOW))).toBe(true)
  })

  it('serves the last bytes of the file and a single byte anywhere', () => {
    const m = mapped(p, WINDOW)
    expect(joined(m.view(SIZE - 1, 1)).equals(data.subarray(SIZE - 1))).toBe(true)
    expect(joined(m.view(SIZE - 900, 900)).equals(data.subarray(SIZE - 900))).toBe(true)
    for (const o of [0, 1, WINDOW - 1, WINDOW, 3 * WINDOW + 5]) expect(m.view(o, 1)[0][0]).toBe(data[o])
  })

  it('is right for many random ranges, in an order that keeps evicting and remapping windows', () => {
    const m = mapped(p, WINDOW)
    let s = 12345
    const rand = (): number => { s = (s * 1103515245 + 12345) % 2 ** 31; return s }
    for (let i = 0; i < 300; i++) {
      const o = rand() % SIZE
      const l = rand() % (SIZE - o + 1)
      expect(joined(m.view(o, l)).equals(data.subarray(o, o + l))).toBe(true)
    }
    // walk back and forth over all 7 windows (only 4 stay mapped)
    for (const w of [0, 6, 1, 5, 2, 4, 3, 0, 6]) {
      const o = w * WINDOW
      const l = Math.min(WINDOW, SIZE - o)
      expect(joined(m.view(o, l)).equals(data.subarray(o, o + l))).toBe(true)
    }
  })

  it('keeps earlier views valid after their window is evicted', () => {
    const m = mapped(p, WINDOW)
    const first = m.view(0, 100)[0]
    for (let w = 1; w < 7; w++) m.view(w * WINDOW, 1)
    expect(first.equals(data.subarray(0, 100))).toBe(true)
  })

  it('with the default window serves the whole file as one view', () => {
    const m = mapped(p)
    const views = m.view(0, SIZE)
    expect(views).toHaveLength(1)
    expect(views[0].equals(data)).toBe(true)
  })

  it('returns no views for an empty range', () => {
    const m = mapped(p, WINDOW)
    expect(m.view(0, 0)).toEqual([])
    expect(m.view(SIZE, 0)).toEqual([])
    expect(m.view(WINDOW, 0)).toEqual([])
  })

  it('throws RangeError for a range outside the file', () => {
    const m = mapped(p, WINDOW)
    expect(() => m.view(SIZE - 10, 11)).toThrow(RangeError)
    expect(() => m.view(SIZE + 1, 0)).toThrow(RangeError)
    expect(() => m.view(-1, 10)).toThrow(RangeError)
    expect(() => m.view(0, -1)).toThrow(RangeError)
  })

  it('refuses a window that is not page aligned', () => {
    expect(() => MappedFile.open(p, 5000)).toThrow(RangeError)
  })

  it('maps an empty file', () => {
    const m = mapped(fileWith('empty.bin', Buffer.alloc(0)), WINDOW)
    expect(m.size).toBe(0)
    expect(m.view(0, 0)).toEqual([])
    expect(() => m.view(0, 1)).toThrow(RangeError)
    expect(() => m.checkSize()).not.toThrow()
    m.close()
  })

  it('fails to open a missing file with the fs error code', () => {
    expect(() => MappedFile.open(path.join(dir, 'missing.bin'))).toThrow(expect.objectContaining({ code: 'ENOENT' }))
  })

  it('refuses to map a directory', () => {
    expect(() => MappedFile.open(dir)).toThrow()
  })

  describe('checkSize', () => {
    it('passes while the file keeps its size', () => {
      const m = mapped(p, WINDOW)
      expect(() => m.checkSize()).not.toThrow()
    })

    // never view a mapping after its file shrank: touching a page past the new end is a SIGBUS
    it('throws ERR_FILE_CHANGED after the file is truncated', () => {
      const q = fileWith('shrinks.bin', content(20_000))
      const m = mapped(q, WINDOW)
      fs.truncateSync(q, 10_000)
      let err: unknown
      try { m.checkSize() } catch (e) { err = e }
      expect(err).toBeInstanceOf(FileChangedError)
      expect(err).toMatchObject({ code: 'ERR_FILE_CHANGED', path: q, expected: 20_000, actual: 10_000 })
      m.close()
    })

    it('throws ERR_FILE_CHANGED after the file is truncated to zero', () => {
      const q = fileWith('emptied.bin', content(20_000))
      const m = mapped(q, WINDOW)
      fs.truncateSync(q, 0)
      expect(() => m.checkSize()).toThrow(expect.objectContaining({ code: 'ERR_FILE_CHANGED', actual: 0 }))
      m.close()
    })

    it('throws ERR_FILE_CHANGED after the file grows', () => {
      const q = fileWith('grows.bin', content(20_000))
      const m = mapped(q, WINDOW)
      fs.appendFileSync(q, Buffer.from('more'))
      expect(() => m.checkSize()).toThrow(expect.objectContaining({ code: 'ERR_FILE_CHANGED', expected: 20_000, actual: 20_004 }))
      m.close()
    })

    it('follows the open file, not the path: a file replaced by rename is still the old one', () => {
      const q = fileWith('replaced.bin', content(20_000))
      const m = mapped(q, WINDOW)
      fs.writeFileSync(path.join(dir, 'replacement.bin'), content(5))
      fs.renameSync(path.join(dir, 'replacement.bin'), q)
      expect(() => m.checkSize()).not.toThrow()
      expect(joined(m.view(0, 20_000)).equals(content(20_000))).toBe(true)
      m.close()
    })
  })

  describe('close', () => {
    it('is safe to call twice', () => {
      const m = MappedFile.open(p, WINDOW)
      m.view(0, 10)
      m.close()
      expect(() => m.close()).not.toThrow()
    })

    it('makes later reads and size checks throw instead of touching a closed descriptor', () => {
      const m = MappedFile.open(p, WINDOW)
      m.view(0, 10)
      m.close()
      expect(() => m.checkSize()).toThrow()
      expect(() => m.view(0, 10)).toThrow()
    })
  })
})

describe('MappedFile past 2 GiB and under truncation', () => {
  // sparse files: nothing but the marked pages takes space
  const marked = (name: string, size: number, marks: number[]): string => {
    const p = path.join(dir, name)
    const fd = fs.openSync(p, 'w')
    try {
      fs.ftruncateSync(fd, size)
      for (const at of marks) fs.writeSync(fd, Buffer.from(`mark@${at}`), 0, undefined, at)
    } finally { fs.closeSync(fd) }
    return p
  }
  const GiB = 2 ** 30

  it('serves bytes at and past 2 GiB and 4 GiB from the right place (mmap-io cannot map an offset that large: it failed, or wrapped to the start)', () => {
    const marks = [0, 2 * GiB - 8, 2 * GiB + 4096, 4 * GiB + 4096]
    const p = marked('big.bin', 4 * GiB + 65536, marks)
    const m = mapped(p) // the production window
    for (const at of marks) expect(joined(m.view(at, 16)).toString('latin1').startsWith(`mark@${at}`)).toBe(true)
    // a range across the 2 GiB line, and read() alike
    const across = joined(m.view(2 * GiB - 8, 4096 + 8 + 16))
    expect(across.subarray(0, 12).toString('latin1')).toBe(`mark@${2 * GiB - 8}`.slice(0, 12))
    expect(across.subarray(4096 + 8, 4096 + 8 + 16).toString('latin1').startsWith(`mark@${2 * GiB + 4096}`)).toBe(true)
    expect(m.read(4 * GiB + 4096, 16).toString('latin1').startsWith(`mark@${4 * GiB + 4096}`)).toBe(true)
  })

  it('read() of a file truncated after opening is a FileChangedError, not SIGBUS', () => {
    const p = fileWith('shrinks.bin', content(SIZE))
    const m = mapped(p, WINDOW)
    fs.truncateSync(p, 100)
    expect(() => m.read(8192, 8192)).toThrow(FileChangedError)
  })
})

describe('MappedFile descriptors', () => {
  afterEach(() => setMaxOpenFiles(MAX_OPEN_FILES))

  it('keeps at most the cap of descriptors open over all mapped files, opening again on use (thousands of shared files ran out of them)', () => {
    setMaxOpenFiles(3)
    const datas = Array.from({ length: 10 }, (_, i) => content(SIZE + i))
    const files = datas.map((d, i) => mapped(fileWith(`many-${i}.bin`, d), WINDOW))
    expect(openFileCount()).toBeLessThanOrEqual(3)
    // every one still reads right, in any order
    for (const i of [9, 0, 5, 0, 3, 8, 1]) {
      expect(joined(files[i].view(0, SIZE + i)).equals(datas[i])).toBe(true)
      expect(files[i].read(100, 1000).equals(datas[i].subarray(100, 1100))).toBe(true)
      files[i].checkSize()
      expect(openFileCount()).toBeLessThanOrEqual(3)
    }
  })

  it('a file replaced by another under its name while its descriptor was closed is a FileChangedError, not the other file’s bytes', () => {
    setMaxOpenFiles(1)
    const p = fileWith('replaced.bin', content(SIZE))
    const m = mapped(p, WINDOW)
    const other = mapped(fileWith('other.bin', content(100)), WINDOW) // takes the one descriptor
    other.checkSize()
    const next = path.join(dir, 'replaced.new')
    fs.writeFileSync(next, Buffer.alloc(SIZE, 7))
    fs.renameSync(next, p)
    expect(() => m.read(0, 100)).toThrow(/replaced/)
    expect(() => m.checkSize()).toThrow(FileChangedError)
  })

  it('a file renamed while its descriptor was closed is opened again where it moved to (moved), and is gone where it was', () => {
    setMaxOpenFiles(1)
    const data = content(SIZE)
    const p = fileWith('before.bin', data)
    const m = mapped(p, WINDOW)
    const other = mapped(fileWith('evicter.bin', content(100)), WINDOW)
    other.checkSize() // takes the one descriptor
    const to = path.join(dir, 'after.bin')
    fs.renameSync(p, to)
    expect(() => m.read(0, 100)).toThrow(/is gone/)
    other.checkSize()
    m.moved(to)
    expect(m.path).toBe(to)
    expect(m.read(100, 1000).equals(data.subarray(100, 1100))).toBe(true)
    m.checkSize()
  })
})

describe('MappedFile reopening', () => {
  afterEach(() => setMaxOpenFiles(MAX_OPEN_FILES))

  it('a FIFO put in a file\'s place while its descriptor was closed is an error at once, not a process blocked for good', () => {
    setMaxOpenFiles(1)
    const p = fileWith('to-fifo.bin', content(SIZE))
    const m = mapped(p, WINDOW)
    mapped(fileWith('evicts.bin', content(100)), WINDOW).checkSize() // takes the one descriptor
    fs.rmSync(p)
    execFileSync('mkfifo', [p])
    expect(() => m.checkSize()).toThrow(FileChangedError)
  })
})

describe('MappedFile.open under a shared folder', () => {
  it('maps a file of the folder, but not a link (to a file outside, or in it), a file reached through a linked folder, or another file than the one listed', () => {
    const share = fs.mkdtempSync(path.join(dir, 'share-'))
    const outside = fs.mkdtempSync(path.join(dir, 'outside-'))
    const secret = path.join(outside, 'secret.txt')
    fs.writeFileSync(secret, 'not to be shared')
    fs.mkdirSync(path.join(share, 'sub'))
    const own = path.join(share, 'sub', 'own.bin')
    fs.writeFileSync(own, 'shared')
    const ok = MappedFile.open(own, undefined, { under: share, listed: fs.lstatSync(own) })
    expect(joined(ok.view(0, 6)).toString()).toBe('shared')
    ok.close()
    // a file swapped for a link after it was listed
    fs.symlinkSync(secret, path.join(share, 'swapped.txt'))
    expect(() => MappedFile.open(path.join(share, 'swapped.txt'), undefined, { under: share })).toThrow()
    fs.symlinkSync(own, path.join(share, 'alias.bin'))
    expect(() => MappedFile.open(path.join(share, 'alias.bin'), undefined, { under: share })).toThrow()
    // a folder on the path swapped for a link to another
    fs.symlinkSync(outside, path.join(share, 'dir'))
    expect(() => MappedFile.open(path.join(share, 'dir', 'secret.txt'), undefined, { under: share })).toThrow(/is not inside/)
    // another file at the listed path (replaced by a rename since it was listed)
    const listed = fs.lstatSync(own)
    fs.writeFileSync(own + '.new', 'shared')
    fs.renameSync(own + '.new', own)
    expect(() => MappedFile.open(own, undefined, { under: share, listed })).toThrow(/replaced since it was listed/)
    // without `under` (a finished download's file), any path opens as before
    const plain = MappedFile.open(path.join(share, 'alias.bin'))
    expect(plain.size).toBe(6)
    plain.close()
  })
})

describe('MappedFile unmapping', () => {
  const mappedHere = (p: string): number => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.endsWith(p) || l.endsWith(`${p} (deleted)`)).length
  async function untilUnmapped (p: string, ms: number): Promise<number> {
    const end = Date.now() + ms
    while (mappedHere(p) > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
    return mappedHere(p)
  }
  // (views taken in a helper: nothing of them stays on this frame's stack)
  const touch = (m: MappedFile): number => m.view(0, SIZE).reduce((n, v) => n + v.length, 0)

  it('a mapped file removed from disk is unmapped soon after it is closed (its blocks were held until some full collection, minutes on an idle peer)', async () => {
    const p = fileWith('removed.bin', content(SIZE))
    const m = MappedFile.open(p, WINDOW)
    expect(touch(m)).toBe(SIZE)
    expect(mappedHere(p)).toBeGreaterThan(0)
    fs.rmSync(p)
    m.close()
    expect(mappingsWaiting()).toBeGreaterThan(0)
    expect(await untilUnmapped(p, UNMAP_FIRST_MS + 5_000)).toBe(0)
    expect(mappingsWaiting()).toBe(0)
  }, 15_000)

  it('so is one replaced by another file renamed over it while its descriptor was closed', async () => {
    setMaxOpenFiles(1)
    try {
      const p = fileWith('replaced.bin', content(SIZE))
      const m = MappedFile.open(p, WINDOW)
      expect(touch(m)).toBe(SIZE)
      mapped(fileWith('takes-the-fd.bin', content(100)), WINDOW).checkSize()
      fs.writeFileSync(p + '.new', 'other')
      fs.renameSync(p + '.new', p)
      m.close()
      expect(mappingsWaiting()).toBeGreaterThan(0)
      expect(await untilUnmapped(p, UNMAP_FIRST_MS + 5_000)).toBe(0)
    } finally { setMaxOpenFiles(MAX_OPEN_FILES) }
  }, 15_000)

  it('closing a file still on disk asks for nothing (its mappings go with the next collection)', () => {
    const p = fileWith('kept.bin', content(SIZE))
    const m = MappedFile.open(p, WINDOW)
    expect(touch(m)).toBe(SIZE)
    const before = mappingsWaiting()
    m.close()
    expect(mappingsWaiting()).toBe(before)
  })
})
