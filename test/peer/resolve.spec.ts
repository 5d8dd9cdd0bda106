import { resolveFile } from '../../src/peer/resolve'
import type { FileMetaData, ListedFile } from '../../src/protocol/messages'

const f = (name: string, hash: string): FileMetaData => ({ name, hash: hash.padEnd(64, '0'), size: 1, blockSize: 16384, pieces: 1 })

describe('resolveFile', () => {
  const files = [f('a.iso', 'abc1'), f('b.iso', 'abd2'), f('dup', 'ff01'), f('dup', 'ff02')]

  it('a name not found says where files of that name are (named by their path in folders), or that it is a folder', () => {
    const tree = [f('train/0001.png', 'e1'), f('val/0001.png', 'e2'), f('train/a/0001.png', 'e3'), f('x0001.png', 'e4')]
    expect(() => resolveFile(tree, '0001.png')).toThrow('no file named or with id prefix "0001.png" (files in folders are named by their path: "train/0001.png", "train/a/0001.png", "val/0001.png")')
    expect(() => resolveFile(tree, 'train')).toThrow('no file named or with id prefix "train" (a folder: `get train/` fetches the files in it)')
    expect(() => resolveFile(tree, 'train/a')).toThrow('(a folder: `get train/a/` fetches the files in it)')
    expect(() => resolveFile(tree, 'nothing.png')).toThrow(/^no file named or with id prefix "nothing.png"$/)
    const many = Array.from({ length: 7 }, (_, i) => f(`d${i}/same.bin`, `c${i}`))
    expect(() => resolveFile(many, 'same.bin')).toThrow(/"d4\/same.bin", and 2 more\)$/)
    expect(resolveFile(tree, 'train/0001.png').hash.startsWith('e1')).toBe(true)
  })

  it('finds a file by exact name', () => {
    expect(resolveFile(files, 'b.iso').hash.startsWith('abd2')).toBe(true)
  })
  it('finds a file by id prefix, case-insensitively', () => {
    expect(resolveFile(files, 'ABC').name).toBe('a.iso')
  })
  it('refuses an ambiguous prefix, listing the candidates', () => {
    expect(() => resolveFile(files, 'ab')).toThrow(expect.objectContaining({ code: 'ERR_AMBIGUOUS', candidates: expect.arrayContaining([expect.objectContaining({ name: 'a.iso' }), expect.objectContaining({ name: 'b.iso' })]) }))
  })
  it('refuses a name two files share', () => {
    expect(() => resolveFile(files, 'dup')).toThrow(expect.objectContaining({ code: 'ERR_AMBIGUOUS' }))
  })
  it('says not found for an unknown name', () => {
    expect(() => resolveFile(files, 'nope')).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }))
  })

  describe('with holder counts (a file changed on disk was published again under a new id)', () => {
    const held = (name: string, hash: string, holders: number): ListedFile => ({ ...f(name, hash), holders })

    it('takes the one version some node holds over versions nobody holds', () => {
      const got = resolveFile([held('img', 'aa01', 0), held('img', 'aa02', 2), held('img', 'aa03', 0)], 'img')
      expect(got.hash.startsWith('aa02')).toBe(true)
      expect(got).not.toHaveProperty('holders') // what leeching gets is the file's metadata only
    })
    it('does the same for an id prefix', () => {
      expect(resolveFile([held('x', 'aa01', 1), held('y', 'aa02', 0)], 'aa').name).toBe('x')
    })
    it('refuses two versions that are both held, with their holder counts', () => {
      const files = [held('img', 'aa01', 1), held('img', 'aa02', 3), held('img', 'aa03', 0)]
      expect(() => resolveFile(files, 'img')).toThrow(expect.objectContaining({
        code: 'ERR_AMBIGUOUS',
        candidates: [{ name: 'img', fileId: 'aa01'.padEnd(64, '0'), holders: 1 }, { name: 'img', fileId: 'aa02'.padEnd(64, '0'), holders: 3 }],
        message: expect.stringContaining('(held by 3)'),
      }))
    })
    it('refuses versions nobody holds, listing them all', () => {
      expect(() => resolveFile([held('img', 'aa01', 0), held('img', 'aa02', 0)], 'img')).toThrow(expect.objectContaining({ code: 'ERR_AMBIGUOUS', candidates: expect.arrayContaining([expect.objectContaining({ holders: 0 })]) }))
    })
    it('takes a single match even when nobody holds it (a holder may come)', () => {
      expect(resolveFile([held('img', 'aa01', 0)], 'img').hash.startsWith('aa01')).toBe(true)
    })
    it('counts a match whose holders a tracker did not give as held', () => {
      expect(() => resolveFile([f('img', 'aa01'), held('img', 'aa02', 1)], 'img')).toThrow(expect.objectContaining({ code: 'ERR_AMBIGUOUS' }))
    })
  })
})
