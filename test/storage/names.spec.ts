import { nameParts, partStem, printable, safeFileName, safeRelativeName } from '../../src/storage/names'
import { MAX_FOLDER_DEPTH, MAX_NAME_BYTES, MAX_PATH_NAME_BYTES } from '../../src/limits'

const BAD_NAME = expect.objectContaining({ name: 'BadNameError', code: 'ERR_BAD_NAME' })

describe('safeFileName', () => {
  it.each([
    'movie.mkv',
    'résumé.pdf',
    'my holiday photos.zip',
    '日本語のファイル.txt',
    'emoji 🎉.png',
    '.hidden',
    '..dots-inside..txt',
    'a..b',
    'console.log',
    'nullable',
    'com10',
    'lpt',
    'CONTRIBUTING.md',
    ' leading space',
    'x',
    'a'.repeat(MAX_NAME_BYTES),
    'é'.repeat(127) + 'a', // 255 bytes
  ])('accepts %j unchanged', (name) => {
    expect(safeFileName(name)).toBe(name)
  })

  it.each<[string, string]>([
    ['empty', ''],
    ['dot', '.'],
    ['dot-dot', '..'],
    ['a path', 'a/b'],
    ['an absolute path', '/etc/passwd'],
    ['a trailing slash', 'dir/'],
    ['a Windows parent path', '..\\x'],
    ['a backslash', 'a\\b'],
    ['a Windows drive path', 'C:\\Windows'],
    ['a NUL byte', 'a\u0000b'],
    ['a lone NUL', '\u0000'],
    ['a newline', 'a\nb'],
    ['a tab', 'a\tb'],
    ['a carriage return', 'report\r.txt'],
    ['a terminal escape', '\x1b[31mred'],
    ['DEL', 'a\u007fb'],
    ['a C1 CSI', 'a\u009b31mb'],
    ['a right-to-left override', '\u202eevil'],
    ['a left-to-right embedding', 'a\u202ab'],
    ['a bidi isolate', 'a\u2066b'],
    ['CON', 'CON'],
    ['con', 'con'],
    ['nul.txt', 'nul.txt'],
    ['NUL.tar.gz', 'NUL.tar.gz'],
    ['com1', 'com1'],
    ['COM9.log', 'COM9.log'],
    ['lpt1', 'lpt1'],
    ['PRN', 'PRN'],
    ['aux.c', 'aux.c'],
    ['256 ASCII bytes', 'a'.repeat(MAX_NAME_BYTES + 1)],
    ['256 UTF-8 bytes in 128 characters', 'é'.repeat(128)],
    ['a long name of emoji', '🎉'.repeat(64) + 'x'], // 257 bytes, 129 UTF-16 units
    ['a trailing dot', 'file.'],
    ['a trailing space', 'file '],
    ['only spaces', '   '],
    ['three dots', '...'],
  ])('rejects %s with ERR_BAD_NAME', (_, name) => {
    expect(() => safeFileName(name)).toThrow(BAD_NAME)
  })

  it('the error carries the (shortened) offending name', () => {
    let err: unknown
    try { safeFileName('a/b') } catch (e) { err = e }
    expect(err).toMatchObject({ code: 'ERR_BAD_NAME', fileName: 'a/b' })
    try { safeFileName('x'.repeat(1000)) } catch (e) { err = e }
    expect((err as { fileName: string }).fileName.length).toBeLessThanOrEqual(40)
  })
})

describe('printable', () => {
  it('leaves ordinary names alone', () => {
    expect(printable('résumé 2024.pdf')).toBe('résumé 2024.pdf')
  })

  it('escapes C0 controls, so a terminal escape shows as text', () => {
    const out = printable('\x1b[31mred\n\u0000')
    expect(out).not.toMatch(/[\u0000-\u001f]/)
    expect(out).toBe('\\u001b[31mred\\u000a\\u0000')
  })

  // DEL and the C1 controls (U+0080–U+009F; U+009B is CSI, a one-character terminal escape) must
  // not reach the terminal raw through cli/format.ts either.
  it.each([
    ['DEL', 'a\u007fb'],
    ['C1 CSI', '\u009b31mred'],
    ['C1 NEL', 'a\u0085b'],
  ])('escapes %s', (_, name) => {
    expect(printable(name)).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/)
  })
})

describe('partStem', () => {
  const ID = '0123456789abcdef'.repeat(4)
  const longest = '.part.state.tmp'

  it('is the name itself while the working files\' names fit', () => {
    expect(partStem('movie.mkv', ID)).toBe('movie.mkv')
    const edge = 'a'.repeat(MAX_NAME_BYTES - longest.length)
    expect(partStem(edge, ID)).toBe(edge)
  })
  it('shortens a longer name to its start and 16 hex of the id, the same every time (a resume finds it)', () => {
    for (const name of ['b'.repeat(MAX_NAME_BYTES), `long-${'é'.repeat(120)}.bin`, '日本'.repeat(42)]) {
      const stem = partStem(name, ID)
      expect(Buffer.byteLength(stem + longest)).toBeLessThanOrEqual(MAX_NAME_BYTES)
      expect(stem.endsWith('~0123456789abcdef')).toBe(true)
      const start = stem.slice(0, -17)
      expect(name.startsWith(start)).toBe(true) // whole characters: no cut UTF-8 sequence
      expect(start.length).toBeGreaterThan(50)
      expect(partStem(name, ID)).toBe(stem)
    }
  })
  it('differs for two files whose long names share their start', () => {
    const name = 'c'.repeat(250)
    expect(partStem(name, ID)).not.toBe(partStem(name, 'f'.repeat(64)))
  })
})

describe('safeRelativeName: a published path in its sharer\'s folder', () => {
  it.each([
    'movie.mkv',
    'train/0001.png',
    'a/b/c/d.txt',
    'photos 2026/été/IMG 1.jpg',
    '.config/x', // (hidden parts are a sharer's choice: it walks none; safe to write all the same)
    'd/'.repeat(MAX_FOLDER_DEPTH) + 'f',
    `${'a'.repeat(MAX_NAME_BYTES)}/${'b'.repeat(MAX_PATH_NAME_BYTES - MAX_NAME_BYTES - 3)}/c`, // (512 bytes)
  ])('accepts %j unchanged', (name) => {
    expect(safeRelativeName(name)).toBe(name)
  })

  it.each<[string, string, RegExp]>([
    ['empty', '', /empty/],
    ['absolute', '/etc/passwd', /absolute path/],
    ['a trailing slash', 'dir/', /empty part/],
    ['a double slash', 'a//b', /empty part/],
    ['parent', '../escape', /\. or \.\. part/],
    ['parent inside', 'a/../../escape', /\. or \.\. part/],
    ['a dot part', 'a/./b', /\. or \.\. part/],
    ['a lone dot-dot', '..', /relative path/],
    ['a backslash in a part', 'a\\..\\b/c', /its part "a\\\\..\\\\b" contains a path separator/],
    ['a reserved part', 'x/CON/y', /its part "CON" is a reserved device name/],
    ['a control character in a folder', 'x\u001b[31m/y', /control characters/],
    ['a part too long', `a/${'b'.repeat(MAX_NAME_BYTES + 1)}`, /longer than 255 bytes/],
    ['too deep', 'd/'.repeat(MAX_FOLDER_DEPTH + 1) + 'f', /folders deep/],
    ['too long', `${'a/'.repeat(200)}${'b'.repeat(200)}`, new RegExp(`longer than ${MAX_PATH_NAME_BYTES} bytes`)],
  ])('refuses %s with ERR_BAD_NAME', (_, name, why) => {
    expect(() => safeRelativeName(name)).toThrow(BAD_NAME)
    expect(() => safeRelativeName(name)).toThrow(why)
  })

  it('nameParts: the folders, then the file name', () => {
    expect(nameParts('a.bin')).toEqual({ folders: [], base: 'a.bin' })
    expect(nameParts('train/a/0001.png')).toEqual({ folders: ['train', 'a'], base: '0001.png' })
    expect(() => nameParts('../x')).toThrow(BAD_NAME)
  })
})
