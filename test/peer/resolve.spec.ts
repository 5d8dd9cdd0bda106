import { resolveFile } from '../../src/peer/resolve'
import type { FileMetaData } from '../../src/protocol/messages'

const f = (name: string, hash: string): FileMetaData => ({ name, hash: hash.padEnd(64, '0'), size: 1, blockSize: 16384, pieces: 1 })

describe('resolveFile', () => {
  const files = [f('a.iso', 'abc1'), f('b.iso', 'abd2'), f('dup', 'ff01'), f('dup', 'ff02')]

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
})
