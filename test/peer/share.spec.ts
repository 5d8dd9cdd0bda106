import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { isShareable, listShare, planShare, scanShare, type KnownFile, type ShareEntry } from '../../src/peer/share'
import { MAX_FILE_SIZE, MAX_FOLDER_DEPTH } from '../../src/limits'

const entry = (name: string, size: number, mtimeMs: number): ShareEntry => ({ path: `/s/${name}`, name, size, mtimeMs })
const known = (size: number, mtimeMs: number, fileId = 'f'): KnownFile => ({ size, mtimeMs, fileId, shared: true })

describe('planShare', () => {
  it('a new file settles first, and is hashed when the next scan sees it unchanged and written long enough ago', () => {
    const e = entry('a.bin', 10, 1000)
    const first = planShare(new Map(), new Map(), [e], 1100, 500)
    expect(first.hash).toEqual([])
    expect([...first.settling.values()]).toEqual([e])
    // unchanged, but written only 400 ms ago: still settling
    expect(planShare(new Map(), first.settling, [e], 1400, 500).hash).toEqual([])
    const ready = planShare(new Map(), first.settling, [e], 1600, 500)
    expect(ready.hash).toEqual([e])
    expect(ready.settling.size).toBe(0)
  })

  it('a file still growing between scans is not hashed (a copy in progress)', () => {
    const s1 = planShare(new Map(), new Map(), [entry('a.bin', 10, 1000)], 5000, 500)
    const s2 = planShare(new Map(), s1.settling, [entry('a.bin', 20, 1000)], 6000, 500)
    expect(s2.hash).toEqual([])
    expect(s2.settling.get('/s/a.bin')?.size).toBe(20)
  })

  it('withdraws removed and changed files; a changed one settles again before it is hashed', () => {
    const k = new Map([['/s/a.bin', known(10, 1000)], ['/s/b.bin', known(5, 1000, 'g')]])
    const p = planShare(k, new Map(), [entry('a.bin', 10, 2000)], 9000, 500)
    expect(p.withdraw.sort()).toEqual(['/s/a.bin', '/s/b.bin'])
    expect(p.hash).toEqual([])
    expect([...p.settling.keys()]).toEqual(['/s/a.bin'])
  })

  it('a file whose ctime alone changed (a rewrite in place that kept size and mtime: rsync --inplace -t, cp -p, touch -r; or a chmod, a link) is hashed again once settled, not withdrawn (the node withdraws it only if its id changed)', () => {
    const k = new Map([['/s/a.bin', { ...known(10, 1000), ctimeMs: 1000 }]])
    const touched = { ...entry('a.bin', 10, 1000), ctimeMs: 8800 }
    const p = planShare(k, new Map(), [touched], 9000, 500)
    expect([p.withdraw, p.hash, p.recheck]).toEqual([[], [], []])
    expect([...p.settling.values()]).toEqual([touched])
    // settled: unchanged at the next scan, and the change (its ctime) long enough ago
    expect(planShare(k, p.settling, [touched], 9100, 500).recheck).toEqual([])
    const q = planShare(k, p.settling, [touched], 9400, 500)
    expect([q.withdraw, q.hash, q.recheck]).toEqual([[], [], [touched]])
    // another inode with the same size and times (an identical copy moved over it: rsync without
    // --inplace, cp -p then mv) is another file: the one served is gone, withdrawn
    const k2 = new Map([['/s/a.bin', { ...known(10, 1000), ctimeMs: 1000, dev: 1, ino: 7 }]])
    const copy = { ...entry('a.bin', 10, 1000), ctimeMs: 8800, dev: 1, ino: 8 }
    expect(planShare(k2, new Map(), [copy], 9000, 500).withdraw).toEqual(['/s/a.bin'])
    // once hashed again (the node keeps the new stamp), it is left alone
    expect(planShare(new Map([['/s/a.bin', { ...known(10, 1000), ctimeMs: 8800 }]]), new Map(), [touched], 9500, 500)).toEqual({ rename: [], hash: [], withdraw: [], recheck: [], settling: new Map() })
  })

  it('leaves known, unchanged files alone', () => {
    const p = planShare(new Map([['/s/a.bin', known(10, 1000)]]), new Map(), [entry('a.bin', 10, 1000)], 9000, 500)
    expect(p).toEqual({ rename: [], hash: [], withdraw: [], recheck: [], settling: new Map() })
  })

  it('a known file whose inode shows up under a new path, with its size and mtime, was renamed: followed, neither withdrawn nor hashed', () => {
    const at = (name: string, size: number, mtimeMs: number, ino: number): ShareEntry => ({ ...entry(name, size, mtimeMs), dev: 1, ino })
    const k = new Map([['/s/draft.bin', { ...known(10, 1000), dev: 1, ino: 7 }], ['/s/other.bin', { ...known(5, 1000, 'g'), dev: 1, ino: 8 }]])
    const p = planShare(k, new Map(), [at('final.bin', 10, 1000, 7), at('other.bin', 5, 1000, 8)], 9000, 500)
    expect(p).toEqual({ rename: [{ from: '/s/draft.bin', to: at('final.bin', 10, 1000, 7) }], hash: [], withdraw: [], recheck: [], settling: new Map() })
    // written since (another size or mtime), or the same inode on another device: a new file, the old one withdrawn
    for (const moved of [at('final.bin', 11, 1000, 7), at('final.bin', 10, 2000, 7), { ...at('final.bin', 10, 1000, 7), dev: 2 }]) {
      const q = planShare(k, new Map(), [moved, at('other.bin', 5, 1000, 8)], 9000, 500)
      expect([q.rename, q.withdraw, [...q.settling.keys()]]).toEqual([[], ['/s/draft.bin'], ['/s/final.bin']])
    }
    // still listed where it was (a hard link made): not a rename
    const linked = planShare(k, new Map(), [at('draft.bin', 10, 1000, 7), at('final.bin', 10, 1000, 7), at('other.bin', 5, 1000, 8)], 9000, 500)
    expect([linked.rename, linked.withdraw, [...linked.settling.keys()]]).toEqual([[], [], ['/s/final.bin']])
    // a rename changes the ctime: still followed
    const renamedLater = planShare(new Map([['/s/draft.bin', { ...known(10, 1000), ctimeMs: 1000, dev: 1, ino: 7 }]]), new Map(), [{ ...at('final.bin', 10, 1000, 7), ctimeMs: 5000 }], 9000, 500)
    expect(renamedLater.rename).toEqual([{ from: '/s/draft.bin', to: { ...at('final.bin', 10, 1000, 7), ctimeMs: 5000 } }])
    // moved over another known file: that one changed (withdrawn and hashed again), the moved one withdrawn
    const over = planShare(k, new Map(), [at('other.bin', 10, 1000, 7)], 9000, 500)
    expect([over.rename, over.withdraw.sort(), [...over.settling.keys()]]).toEqual([[], ['/s/draft.bin', '/s/other.bin'], ['/s/other.bin']])
  })
})

describe('isShareable', () => {
  it('skips downloads in progress, hidden and temporary files', () => {
    for (const n of ['x.part', 'x.part.state', '.hidden', '.x.bin.Ab12Cd', 'x~', 'x.tmp', 'x.swp', 'x.crdownload']) expect([n, isShareable(n)]).toEqual([n, false])
    for (const n of ['x.bin', 'party.iso', 'a.partition']) expect([n, isShareable(n)]).toEqual([n, true])
  })
})

describe('listShare', () => {
  it('lists shareable regular files recursively with size and mtime, named by their path in the folder, bounded; hidden folders are not walked', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-share-'))
    try {
      fs.mkdirSync(path.join(d, 'sub', 'deeper'), { recursive: true })
      fs.mkdirSync(path.join(d, '.git'))
      fs.writeFileSync(path.join(d, 'a.bin'), 'aaa')
      fs.writeFileSync(path.join(d, 'sub', 'b.bin'), 'bb')
      fs.writeFileSync(path.join(d, 'sub', 'deeper', 'a.bin'), 'a')
      fs.writeFileSync(path.join(d, 'c.bin.part'), 'c')
      fs.writeFileSync(path.join(d, '.hidden'), 'h')
      fs.writeFileSync(path.join(d, '.git', 'HEAD'), 'ref')
      const all = await listShare(d)
      expect(all.map((e) => [path.relative(d, e.path), e.name, e.size]).sort()).toEqual([
        ['a.bin', 'a.bin', 3], [path.join('sub', 'b.bin'), 'sub/b.bin', 2], [path.join('sub', 'deeper', 'a.bin'), 'sub/deeper/a.bin', 1],
      ])
      expect(all.every((e) => e.mtimeMs > 0)).toBe(true)
      expect(await listShare(d, 1)).toHaveLength(1)
    } finally { fs.rmSync(d, { recursive: true, force: true }) }
  })
})

describe('what a share skips, and says', () => {
  let d: string
  beforeEach(() => {
    d = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-share-'))
    fs.mkdirSync(path.join(d, 'locked'))
    fs.writeFileSync(path.join(d, 'locked', 'x.bin'), 'x')
    fs.writeFileSync(path.join(d, 'ok.bin'), 'ok')
    fs.writeFileSync(path.join(d, 'bad:name.bin'), 'b') // (':' is refused: Windows forbids it)
  })
  afterEach(() => { jest.restoreAllMocks(); fs.rmSync(d, { recursive: true, force: true }) })
  // a folder this user cannot read (root reads any, so the refusal is made here)
  const lockFolder = (): void => {
    const readdir = fs.promises.readdir.bind(fs.promises)
    jest.spyOn(fs.promises, 'readdir').mockImplementation((async (p: fs.PathLike, o: unknown) => {
      if (String(p) === path.join(d, 'locked')) throw Object.assign(new Error(`EACCES: permission denied, scandir '${String(p)}'`), { code: 'EACCES' })
      return readdir(p, o as { withFileTypes: true })
    }) as typeof fs.promises.readdir)
  }

  it('scanShare: an unreadable subfolder and an unsafe name are skipped and said; the rest is shared', async () => {
    lockFolder()
    const skipped: [string, string][] = []
    const files = await scanShare(d, undefined, (p, why) => skipped.push([path.relative(d, p), why]))
    try {
      expect(files.map((f) => f.name)).toEqual(['ok.bin'])
      expect(skipped).toEqual([
        ['bad:name.bin', expect.stringMatching(/^file name unsafe to publish: .*Windows forbids/)],
        ['locked', expect.stringMatching(/^cannot read folder: EACCES/)],
      ])
    } finally { for (const f of files) f.file.close() }
  })

  it('scanShare: files in subfolders are published by their path there (one base name in two folders is two files); a folder with an unsafe name, or nested past MAX_FOLDER_DEPTH, is skipped and said; hidden folders are not walked', async () => {
    fs.mkdirSync(path.join(d, 'train'))
    fs.mkdirSync(path.join(d, 'val'))
    fs.mkdirSync(path.join(d, 'we:ird'))
    fs.mkdirSync(path.join(d, '.cache'))
    fs.writeFileSync(path.join(d, 'train', '0001.png'), 'train one')
    fs.writeFileSync(path.join(d, 'val', '0001.png'), 'val one')
    fs.writeFileSync(path.join(d, 'we:ird', 'x.bin'), 'weird')
    fs.writeFileSync(path.join(d, '.cache', 'c.bin'), 'cached')
    const deep = path.join(d, ...Array.from({ length: MAX_FOLDER_DEPTH + 1 }, () => 'd'))
    fs.mkdirSync(deep, { recursive: true })
    fs.writeFileSync(path.join(path.dirname(deep), 'deepest.bin'), 'at the depth a name may have')
    fs.writeFileSync(path.join(deep, 'too-deep.bin'), 'past it')
    const skipped: [string, string][] = []
    const files = await scanShare(d, undefined, (p, why) => skipped.push([path.relative(d, p), why]))
    try {
      expect(files.map((f) => f.name).sort()).toEqual(['bad:name.bin', 'd/'.repeat(MAX_FOLDER_DEPTH) + 'deepest.bin', 'locked/x.bin', 'ok.bin', 'train/0001.png', 'val/0001.png'].filter((n) => n !== 'bad:name.bin').sort())
      expect(skipped).toEqual(expect.arrayContaining([
        [path.join('we:ird', 'x.bin'), expect.stringMatching(/^file name unsafe to publish: .*"we:ird\/x.bin": its part "we:ird" contains a character Windows forbids/)],
        [path.relative(d, deep), 'folder nested too deep'],
      ]))
      const listed = await listShare(d)
      expect(listed.map((e) => e.name).sort()).toEqual(files.map((f) => f.name).sort())
    } finally { for (const f of files) f.file.close() }
  })

  it('a file over MAX_FILE_SIZE (a sparse one here) is skipped and said by scanShare and listShare, without being hashed', async () => {
    const big = path.join(d, 'huge.img')
    fs.writeFileSync(big, '')
    fs.truncateSync(big, MAX_FILE_SIZE + 1)
    const skipped: [string, string][] = []
    const files = await scanShare(d, undefined, (p, why) => skipped.push([path.relative(d, p), why]))
    try {
      expect(files.map((f) => f.name)).toEqual(expect.arrayContaining(['ok.bin']))
      expect(files.map((f) => f.name)).not.toContain('huge.img')
      expect(skipped).toContainEqual(['huge.img', 'larger than 1.5 TiB, the most a file may be (pieces × the largest block)'])
    } finally { for (const f of files) f.file.close() }
    const listed: string[] = []
    expect((await listShare(d, 100, (p) => listed.push(path.relative(d, p)))).map((e) => e.name)).not.toContain('huge.img')
    expect(listed).toContain('huge.img')
    fs.truncateSync(big, MAX_FILE_SIZE) // (at the bound: listed)
    expect((await listShare(d, 100)).map((e) => e.name)).toContain('huge.img')
  })

  it('scanShare: the shared folder itself unreadable is an error (nothing to share)', async () => {
    await expect(scanShare(path.join(d, 'missing'), undefined, () => {})).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('listShare (every rescan): says the same skips, but not a folder removed while it walks', async () => {
    lockFolder()
    const skipped: string[] = []
    const all = await listShare(d, 100, (p) => skipped.push(path.relative(d, p)))
    expect(all.map((e) => e.name)).toEqual(['ok.bin'])
    expect(skipped.sort()).toEqual(['bad:name.bin', 'locked'])
    jest.restoreAllMocks()
    fs.rmSync(path.join(d, 'locked'), { recursive: true })
    const readdir = fs.promises.readdir.bind(fs.promises)
    jest.spyOn(fs.promises, 'readdir').mockImplementation((async (p: fs.PathLike, o: unknown) => {
      if (String(p) === d) return [...await readdir(p, o as { withFileTypes: true }), Object.assign(new fs.Dirent(), { name: 'vanished', isDirectory: () => true, isFile: () => false })]
      return readdir(p, o as { withFileTypes: true })
    }) as typeof fs.promises.readdir)
    const again: string[] = []
    await listShare(d, 100, (p) => again.push(path.relative(d, p)))
    expect(again).toEqual(['bad:name.bin'])
  })
})
