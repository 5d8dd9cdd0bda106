import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { lastValueFrom, toArray } from 'rxjs'
import { mkdirs } from '../../src/storage/mkdirs'
import { LOCK_STALE_MS, PartFile } from '../../src/storage/partFile'

const BAD_NAME = expect.objectContaining({ code: 'ERR_BAD_NAME' })
const STORAGE = expect.objectContaining({ name: 'StorageError', code: 'ERR_STORAGE' })

let root: string
let n = 0
/** A fresh output folder per test, so nothing leaks between them. */
const outDir = (): string => path.join(root, `out-${n++}`)
const parts: PartFile[] = []

function openPart (dir: string, name: string, size: number): PartFile {
  const p = PartFile.open(dir, name, size)
  parts.push(p)
  return p
}

function content (size: number, seed = 3): Buffer {
  const b = Buffer.alloc(size)
  for (let i = 0; i < size; i++) b[i] = (i * 131 + seed + (i >> 10)) & 0xff
  return b
}

const BLOCK = 16_384

beforeAll(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-part-')) })
afterAll(() => {
  for (const p of parts) p.close()
  fs.rmSync(root, { recursive: true, force: true })
})

describe('PartFile', () => {
  it('creates OUT/NAME.part (and OUT) sized to the file', () => {
    const dir = path.join(outDir(), 'nested', 'deeper')
    const p = openPart(dir, 'movie.mkv', 100_000)
    expect(p.partPath).toBe(path.join(dir, 'movie.mkv.part'))
    expect(p.finalPath).toBe(path.join(dir, 'movie.mkv'))
    expect(fs.statSync(p.partPath).size).toBe(100_000)
    expect(fs.existsSync(p.finalPath)).toBe(false)
  })

  it('commit gives the final name only to the file this download wrote: a .part moved, replaced or resized meanwhile is refused, and nothing is renamed', async () => {
    for (const change of ['replace', 'truncate', 'move'] as const) {
      const dir = outDir()
      const data = Buffer.alloc(8192, 5)
      const p = openPart(dir, 'swap.bin', data.length)
      await lastValueFrom(p.write(data, 0))
      if (change === 'replace') { fs.writeFileSync(`${p.partPath}.x`, data); fs.renameSync(`${p.partPath}.x`, p.partPath) }
      if (change === 'truncate') fs.truncateSync(p.partPath, 100)
      if (change === 'move') fs.renameSync(p.partPath, `${p.partPath}.moved`)
      expect(() => p.commit()).toThrow(expect.objectContaining({ code: 'ERR_STORAGE', message: expect.stringMatching(/was moved, replaced or resized during the download/) }))
      expect(fs.existsSync(path.join(dir, 'swap.bin'))).toBe(false)
      p.close()
    }
  })

  it('a .part left as a second name of the final file (a get killed between the link and the unlink of its commit) is cleaned up, with its state and stale lock; the file stays', () => {
    const dir = outDir()
    fs.mkdirSync(dir, { recursive: true })
    const final = path.join(dir, 'done.bin')
    fs.writeFileSync(final, 'verified')
    fs.linkSync(final, `${final}.part`)
    fs.writeFileSync(`${final}.part.state`, '{}')
    const dead = spawnSync(process.execPath, ['-e', '0']).pid as number
    fs.writeFileSync(`${final}.part.lock`, `${dead}\n`)
    expect(() => PartFile.open(dir, 'done.bin', 8)).toThrow(expect.objectContaining({ code: 'ERR_STORAGE', message: expect.stringMatching(/done\.bin already exists/) }))
    expect(fs.readdirSync(dir)).toEqual(['done.bin'])
    expect(fs.readFileSync(final, 'utf8')).toBe('verified')
    // an unrelated .part beside an existing file of that name is not touched
    fs.writeFileSync(`${final}.part`, 'other')
    expect(() => PartFile.open(dir, 'done.bin', 8)).toThrow(/already exists/)
    expect(fs.readdirSync(dir).sort()).toEqual(['done.bin', 'done.bin.part'])
  })

  it('writes pieces out of order, then commit renames NAME.part to NAME with the exact content', async () => {
    const dir = outDir()
    const data = content(100_000)
    const p = openPart(dir, 'résumé final.pdf', data.length)
    const offsets = [6, 2, 0, 5, 1, 4, 3].map((i) => i * BLOCK)
    for (const o of offsets) await lastValueFrom(p.write(data.subarray(o, o + BLOCK), o))
    const final = p.commit()
    expect(final).toBe(path.join(dir, 'résumé final.pdf'))
    expect(fs.readFileSync(final).equals(data)).toBe(true)
    expect(fs.existsSync(p.partPath)).toBe(false)
    expect(fs.readdirSync(dir)).toEqual(['résumé final.pdf'])
  })

  it('writes many pieces in flight at once correctly', async () => {
    const dir = outDir()
    const data = content(200_000, 9)
    const p = openPart(dir, 'c.bin', data.length)
    const writes = []
    for (let o = 0; o < data.length; o += 4096) writes.push(lastValueFrom(p.write(data.subarray(o, o + 4096), o)))
    await Promise.all(writes)
    expect(fs.readFileSync(p.commit()).equals(data)).toBe(true)
  })

  it('write emits once and completes', async () => {
    const p = openPart(outDir(), 'once.bin', 10)
    await expect(lastValueFrom(p.write(Buffer.from('hello'), 0).pipe(toArray()))).resolves.toEqual([undefined])
    await expect(lastValueFrom(p.write(Buffer.alloc(0), 3).pipe(toArray()))).resolves.toEqual([undefined])
  })

  it('write does nothing until subscribed', async () => {
    const p = openPart(outDir(), 'lazy.bin', 4)
    const pending = p.write(Buffer.from('XXXX'), 0)
    await lastValueFrom(p.write(Buffer.from('b'), 1)) // lets any stray async write land first
    expect(fs.readFileSync(p.partPath)).toEqual(Buffer.from([0, 0x62, 0, 0]))
    await lastValueFrom(pending)
    expect(fs.readFileSync(p.partPath).toString()).toBe('XXXX')
  })

  it('source() reads back what was written through the mapping', async () => {
    const data = content(50_000, 4)
    const p = openPart(outDir(), 'src.bin', data.length)
    await lastValueFrom(p.write(data.subarray(BLOCK), BLOCK))
    const src = p.source()
    expect(src.size).toBe(data.length)
    expect(Buffer.concat(src.view(BLOCK, data.length - BLOCK)).equals(data.subarray(BLOCK))).toBe(true)
    expect(Buffer.concat(src.view(0, BLOCK)).equals(Buffer.alloc(BLOCK))).toBe(true) // not written yet
    // the mapping is shared: later writes show through the same source
    await lastValueFrom(p.write(data.subarray(0, BLOCK), 0))
    expect(p.source()).toBe(src)
    expect(Buffer.concat(src.view(0, data.length)).equals(data)).toBe(true)
  })

  it('keeps the bytes of an existing .part of the right size (resume)', async () => {
    const dir = outDir()
    const data = content(40_000, 5)
    const first = openPart(dir, 'resume.bin', data.length)
    await lastValueFrom(first.write(data.subarray(0, BLOCK), 0))
    first.close()
    expect(first.fresh).toBe(true)
    const again = openPart(dir, 'resume.bin', data.length)
    expect(again.fresh).toBe(false) // its bytes may be pieces a resume state lists
    expect(fs.readFileSync(again.partPath).subarray(0, BLOCK).equals(data.subarray(0, BLOCK))).toBe(true)
    await lastValueFrom(again.write(data.subarray(BLOCK), BLOCK))
    expect(fs.readFileSync(again.commit()).equals(data)).toBe(true)
  })

  it('resizes an existing .part of another size', () => {
    const dir = outDir()
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, 'sized.bin.part'), content(500))
    const p = openPart(dir, 'sized.bin', 200)
    expect(fs.statSync(p.partPath).size).toBe(200)
    expect(p.fresh).toBe(true) // another size: not the .part a resume state was written for
    p.close()
    const q = openPart(dir, 'sized.bin', 1000)
    expect(fs.statSync(q.partPath).size).toBe(1000)
  })

  it('handles an empty file', () => {
    const p = openPart(outDir(), 'empty.txt', 0)
    expect(p.source().size).toBe(0)
    const final = p.commit()
    expect(fs.statSync(final).size).toBe(0)
  })

  it('a name with folders (a file in a sharer\'s subfolder) is written in those folders of OUT, made if missing, and committed there', async () => {
    const dir = outDir()
    const p = openPart(dir, 'train/a/0001.png', 5)
    expect(p.partPath).toBe(path.join(dir, 'train', 'a', '0001.png.part'))
    await lastValueFrom(p.write(Buffer.from('hello'), 0))
    expect(p.commit()).toBe(path.join(dir, 'train', 'a', '0001.png'))
    expect(fs.readFileSync(path.join(dir, 'train', 'a', '0001.png'), 'utf8')).toBe('hello')
    expect(fs.readdirSync(path.join(dir, 'train', 'a'))).toEqual(['0001.png'])
    // the same base name in another folder is another file
    const q = openPart(dir, 'val/0001.png', 3)
    await lastValueFrom(q.write(Buffer.from('val'), 0))
    expect(fs.readFileSync(q.commit(), 'utf8')).toBe('val')
    expect(fs.readFileSync(path.join(dir, 'train', 'a', '0001.png'), 'utf8')).toBe('hello')
  })

  describe('open refuses', () => {
    it.each<[string, string]>([
      ['empty', ''], ['dot', '.'], ['dot-dot', '..'], ['../escape', '../escape'], ['a/../../escape', 'a/../../escape'], ['/etc/passwd', '/etc/passwd'],
      ['a//b', 'a//b'], ['a/./b', 'a/./b'], ['dir/', 'dir/'], ['a\\b/c', 'a\\b/c'], ['a/CON/b', 'a/CON/b'], ['a/x\u0000/b', 'a/x\u0000/b'],
      ['..\\x', '..\\x'], ['NUL inside', 'a\u0000b'], ['ESC inside', '\x1b[31mred'], ['RLO inside', '\u202eevil'],
      ['CON', 'CON'], ['nul.txt', 'nul.txt'], ['256 bytes long', 'x'.repeat(256)], ['a part 256 bytes long', `a/${'x'.repeat(256)}`], ['trailing.', 'trailing.'],
      ['17 folders deep', 'd/'.repeat(17) + 'f'],
    ])('the unsafe name %s with ERR_BAD_NAME, creating nothing', (_, name) => {
      const dir = outDir()
      expect(() => PartFile.open(dir, name, 10)).toThrow(BAD_NAME)
      expect(fs.existsSync(dir)).toBe(false)
      expect(fs.existsSync(path.join(root, 'escape.part'))).toBe(false)
    })

    it('a name with folders where one is a regular file with ERR_STORAGE', () => {
      const dir = outDir()
      fs.mkdirSync(dir)
      fs.writeFileSync(path.join(dir, 'train'), 'a file')
      expect(() => PartFile.open(dir, 'train/0001.png', 10)).toThrow(STORAGE)
      expect(fs.readFileSync(path.join(dir, 'train'), 'utf8')).toBe('a file')
    })

    it('a name whose folder in OUT is a link with ERR_STORAGE, writing nothing where it points (a link planted in --out had the download written there)', () => {
      const dir = outDir()
      const elsewhere = outDir()
      fs.mkdirSync(dir)
      fs.mkdirSync(path.join(elsewhere, 'deeper'), { recursive: true })
      fs.symlinkSync(elsewhere, path.join(dir, 'train'))
      expect(() => PartFile.open(dir, 'train/0001.png', 10)).toThrow(expect.objectContaining({ code: 'ERR_STORAGE', message: expect.stringMatching(/train is a link: a download is not written through it/) }))
      expect(() => PartFile.open(dir, 'train/deeper/0001.png', 10)).toThrow(STORAGE)
      expect(fs.readdirSync(elsewhere)).toEqual(['deeper'])
      expect(fs.readdirSync(path.join(elsewhere, 'deeper'))).toEqual([])
    })

    it('a folder below a regular file with ERR_STORAGE', () => {
      const file = path.join(outDir() + '.file')
      fs.writeFileSync(file, 'x')
      expect(() => PartFile.open(path.join(file, 'sub'), 'a.bin', 10)).toThrow(STORAGE)
      expect(() => PartFile.open(file, 'a.bin', 10)).toThrow(STORAGE)
    })

    // root ignores permission bits, so this case only means something for an ordinary user
    const asUser = process.getuid?.() === 0 ? it.skip : it
    asUser('a read-only folder with ERR_STORAGE', () => {
      const dir = outDir()
      fs.mkdirSync(dir, { mode: 0o555 })
      try {
        expect(() => PartFile.open(dir, 'a.bin', 10)).toThrow(STORAGE)
      } finally {
        fs.chmodSync(dir, 0o755)
      }
    })

    it('a .part that is a symlink with ERR_STORAGE, leaving its target alone', () => {
      const dir = outDir()
      fs.mkdirSync(dir)
      const target = path.join(dir, 'victim.txt')
      fs.writeFileSync(target, 'precious')
      fs.symlinkSync(target, path.join(dir, 'evil.bin.part'))
      expect(() => PartFile.open(dir, 'evil.bin', 0)).toThrow(STORAGE)
      expect(fs.readFileSync(target, 'utf8')).toBe('precious')
    })
  })

  describe('the lock (NAME.part.lock)', () => {
    it('refuses a second open while the first holds it, naming the pid; frees it on close and on commit', () => {
      const dir = outDir()
      const p = openPart(dir, 'locked.bin', 10)
      expect(fs.readFileSync(`${p.partPath}.lock`, 'utf8').trim()).toMatch(new RegExp(`^${process.pid} [0-9a-f]{16} \\S+ \\d+$`))
      // (held by this very process: said so, not "another process" with our own pid)
      expect(() => PartFile.open(dir, 'locked.bin', 10)).toThrow(expect.objectContaining({ code: 'ERR_STORAGE', message: expect.stringMatching(/locked\.bin.*\.part is being downloaded already \(by this process\)/) }))
      p.close()
      expect(fs.existsSync(`${p.partPath}.lock`)).toBe(false)
      const q = openPart(dir, 'locked.bin', 10)
      q.commit()
      expect(fs.readdirSync(dir)).toEqual(['locked.bin'])
    })

    it('takes over a lock whose process is gone (a crash), keeping the .part for the resume', () => {
      const dir = outDir()
      const p = openPart(dir, 'stale.bin', 10)
      p.close()
      const dead = spawnSync(process.execPath, ['-e', '0']).pid as number // exited: its pid is free
      fs.writeFileSync(`${p.partPath}.lock`, `${dead}\n`)
      const q = openPart(dir, 'stale.bin', 10)
      expect(q.fresh).toBe(false)
      expect(fs.readFileSync(`${q.partPath}.lock`, 'utf8').trim()).toMatch(new RegExp(`^${process.pid} `))
      fs.writeFileSync(path.join(dir, 'junk.bin.part.lock'), 'not a pid')
      expect(() => openPart(dir, 'junk.bin', 10).close()).not.toThrow()
      // our own pid on a lock this process does not hold: an earlier process that had our pid left it
      q.close()
      fs.writeFileSync(`${q.partPath}.lock`, `${process.pid}\n`)
      expect(() => openPart(dir, 'stale.bin', 10).close()).not.toThrow()
      fs.writeFileSync(`${q.partPath}.lock`, `${process.pid} 0123456789abcdef\n`)
      expect(() => openPart(dir, 'stale.bin', 10).close()).not.toThrow()
    })

    it('a lock whose pid belongs now to another process (pids are reused) is taken over; one of that live process is not', () => {
      const dir = outDir()
      const p = openPart(dir, 'reused.bin', 10)
      const lock = `${p.partPath}.lock`
      const space = fs.readFileSync(lock, 'utf8').trim().split(' ')[2] // (this host's pid space)
      p.close()
      const stat = fs.readFileSync(`/proc/${process.ppid}/stat`, 'utf8')
      const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19])
      // the live parent's pid, with its own start: held
      fs.writeFileSync(lock, `${process.ppid} 0123456789abcdef ${space} ${start}\n`)
      expect(() => PartFile.open(dir, 'reused.bin', 10)).toThrow(expect.objectContaining({ code: 'ERR_STORAGE', message: expect.stringMatching(new RegExp(`being downloaded by another process \\(pid ${process.ppid}\\)`)) }))
      // the same pid, started at another time: a get that died, its pid since given to this process
      fs.writeFileSync(lock, `${process.ppid} 0123456789abcdef ${space} ${start + 1}\n`)
      const q = openPart(dir, 'reused.bin', 10)
      expect(fs.readFileSync(lock, 'utf8')).toMatch(new RegExp(`^${process.pid} `))
      q.close()
    })

    it('a lock from another host or container (another pid space) is live while it is touched, and taken over once stale', () => {
      const dir = outDir()
      const p = openPart(dir, 'far.bin', 10)
      p.close()
      const lock = `${p.partPath}.lock`
      fs.writeFileSync(lock, '4242 0123456789abcdef otherhost|boot|pid:[1]\n')
      expect(() => PartFile.open(dir, 'far.bin', 10)).toThrow(expect.objectContaining({ code: 'ERR_STORAGE', message: expect.stringMatching(/being downloaded by another process \(pid 4242 on otherhost, another host or container; its lock was touched \d+ s ago\)/) }))
      expect(fs.readFileSync(lock, 'utf8')).toMatch(/^4242 /) // left as it was
      const old = new Date(Date.now() - LOCK_STALE_MS - 1000)
      fs.utimesSync(lock, old, old)
      const q = openPart(dir, 'far.bin', 10)
      expect(fs.readFileSync(lock, 'utf8')).toMatch(new RegExp(`^${process.pid} `))
      q.close()
      expect(fs.existsSync(lock)).toBe(false)
    })

    it('a lock another get took over is not removed by the one that lost it, and neither is a .part put in its place', () => {
      const dir = outDir()
      const p = openPart(dir, 'over.bin', 10)
      const lock = `${p.partPath}.lock`
      const theirs = `${process.pid + 1} fedcba9876543210\n`
      fs.writeFileSync(lock, theirs)
      // (the .part replaced by another file meanwhile: not this download's to delete)
      fs.writeFileSync(`${p.partPath}.new`, 'theirs')
      fs.renameSync(`${p.partPath}.new`, p.partPath)
      p.discard()
      expect(fs.readFileSync(lock, 'utf8')).toBe(theirs)
      expect(fs.readFileSync(p.partPath, 'utf8')).toBe('theirs')
    })

    it('a second open of a .part this process holds through another name of its folder (a symlink) is refused too', () => {
      const dir = outDir()
      const alias = `${dir}-alias`
      fs.symlinkSync(dir, alias)
      try {
        const p = openPart(dir, 'twice.bin', 10)
        expect(() => PartFile.open(alias, 'twice.bin', 10)).toThrow(expect.objectContaining({ code: 'ERR_STORAGE', message: expect.stringContaining('being downloaded already (by this process)') }))
        expect(fs.existsSync(`${p.partPath}.lock`)).toBe(true)
        p.close()
      } finally { fs.rmSync(alias) }
    })
  })

  describe('close and commit', () => {
    it('close is safe to call twice and leaves the .part for a resume', () => {
      const p = openPart(outDir(), 'keep.bin', 10)
      p.source()
      p.close()
      expect(() => p.close()).not.toThrow()
      expect(fs.existsSync(p.partPath)).toBe(true)
      expect(fs.existsSync(p.finalPath)).toBe(false)
    })

    it('close after commit is safe', () => {
      const p = openPart(outDir(), 'done.bin', 10)
      p.commit()
      expect(() => p.close()).not.toThrow()
    })

    it('a write after close errors with ERR_STORAGE', async () => {
      const p = openPart(outDir(), 'closed.bin', 10)
      p.close()
      await expect(lastValueFrom(p.write(Buffer.from('x'), 0))).rejects.toEqual(STORAGE)
    })

    it('commit fails with ERR_STORAGE when the final name is taken by a folder', () => {
      const dir = outDir()
      const p = openPart(dir, 'taken', 10)
      fs.mkdirSync(path.join(dir, 'taken'))
      fs.writeFileSync(path.join(dir, 'taken', 'inside'), 'x')
      expect(() => p.commit()).toThrow(STORAGE)
      expect(fs.existsSync(p.partPath)).toBe(true)
    })
  })
})

describe('mkdirs', () => {
  it('creates missing levels; refuses where a folder refuses children (procfs), instead of looping for ever', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-mkdirs-'))
    try {
      mkdirs(path.join(base, 'a', 'b', 'c'))
      expect(fs.statSync(path.join(base, 'a', 'b', 'c')).isDirectory()).toBe(true)
      mkdirs(path.join(base, 'a', 'b')) // exists: nothing to do
      fs.writeFileSync(path.join(base, 'f'), 'x')
      expect(() => mkdirs(path.join(base, 'f', 'x'))).toThrow()
    } finally { fs.rmSync(base, { recursive: true, force: true }) }
    if (fs.existsSync('/proc/self')) expect(() => mkdirs('/proc/lp2p-not-a-folder/x')).toThrow()
  })
})

describe('PartFile free space', () => {
  it('refuses a download the disk has no room for, before anything is written, and leaves nothing behind', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-free-'))
    try {
      expect(() => PartFile.open(base, 'big.bin', 100 * 1024 * 1024, undefined, { freeBytes: () => 10 * 1024 * 1024 })).toThrow(/not enough free space.*needs 100\.0 MiB more, 10\.0 MiB free/)
      expect(fs.readdirSync(base)).toEqual([])
      // room enough, or no way to tell: opened
      const p = PartFile.open(base, 'big.bin', 1024 * 1024, undefined, { freeBytes: () => null })
      p.close()
      expect(fs.readdirSync(base).sort()).toEqual(['big.bin.part'])
    } finally { fs.rmSync(base, { recursive: true, force: true }) }
  })
})

describe('PartFile that cannot be sized', () => {
  it('a file size limit (EFBIG) is a clear error and leaves no empty .part behind', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-fsize-'))
    try {
      // a child with a 100 KiB file size limit (ulimit -f counts 1 KiB blocks) opens a 1 MiB download
      const repo = path.join(__dirname, '..', '..')
      // (the source under test, not a build of it that may be older)
      const load = `(require('ts-node').register({ transpileOnly: true, project: ${JSON.stringify(path.join(repo, 'tsconfig.json'))} }), require(${JSON.stringify(path.join(repo, 'src', 'storage', 'partFile.ts'))}))`
      const script = `try { ${load}.PartFile.open(${JSON.stringify(base)}, 'big.bin', 1048576, undefined, { freeBytes: () => null }); console.log('opened') } catch (e) { console.log(e.message) }`
      const r = spawnSync('bash', ['-c', 'ulimit -f 100 && exec "$0" -e "$1"', process.execPath, script], { encoding: 'utf8' })
      expect(r.stdout.trim()).toMatch(/^cannot size .*big\.bin\.part to 1048576 bytes: .*EFBIG/)
      expect(fs.readdirSync(base)).toEqual([])
    } finally { fs.rmSync(base, { recursive: true, force: true }) }
  })
})
