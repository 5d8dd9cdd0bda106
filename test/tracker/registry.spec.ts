import { IndexedSet, Registry } from '../../src/tracker/registry'

describe('Registry.sampleNodes and IndexedSet', () => {
  it('draws up to k distinct live holders, different ones for different draws, in O(k)', () => {
    const set = new IndexedSet()
    for (let i = 0; i < 1000; i++) set.add(`n${i}`)
    for (let i = 0; i < 1000; i += 2) set.delete(`n${i}`)
    expect(set.size).toBe(500)
    let x = 1
    const rnd = (): number => { x = (x * 16807) % 2147483647; return x / 2147483647 }
    const seen = new Set<string>()
    for (let d = 0; d < 50; d++) {
      const s = set.sample(16, rnd)
      expect(new Set(s).size).toBe(16)
      for (const id of s) { expect(set.has(id)).toBe(true); seen.add(id) }
    }
    expect(seen.size).toBeGreaterThan(250) // spread over the holders, not one first page
    expect(set.sample(600, rnd).sort()).toEqual([...set].sort())
  })
})

it('Registry.sampleNodes: only live holders of that file, at most k', () => {
  const reg = new Registry(undefined, 15_000, () => 0.5)
  const file = { name: 'f.bin', hash: 'ab'.repeat(32), size: 1 << 20 }
  for (let i = 0; i < 40; i++) reg.publish({ nodeId: i.toString(16).padStart(32, '0'), host: '10.0.0.1', port: 1000 + i }, file, 0)
  reg.announce({ nodeId: 'f'.repeat(32), host: '10.0.0.2', port: 9 }, 0, 0) // live, holds nothing
  const s = reg.sampleNodes(file.hash, 10)
  expect(s).toHaveLength(10)
  expect(new Set(s.map((n) => n.nodeId)).size).toBe(10)
  expect(s.every((n) => n.files.some((f) => f.fileId === file.hash))).toBe(true)
  expect(reg.sampleNodes('cd'.repeat(32), 10)).toEqual([])
  reg.expire(20_000)
  expect(reg.sampleNodes(file.hash, 10)).toEqual([])
})

it('Registry.publish: a complete holder publishing another name renames the file; a partial holder does not', () => {
  const reg = new Registry(undefined, 15_000)
  const node = (i: number): { nodeId: string, host: string, port: number } => ({ nodeId: String(i).padStart(32, '0'), host: '10.0.0.1', port: 1000 + i })
  const file = { name: 'old.iso', hash: 'ab'.repeat(32), size: 1 << 20 }
  expect(reg.publish(node(1), file, 0).name).toBe('old.iso')
  // a downloader publishes what it holds under its own idea of the name: nothing changes
  expect(reg.publish(node(2), { ...file, name: 'mine.iso', have: 1 }, 0).name).toBe('old.iso')
  expect(reg.files.get(file.hash)?.name).toBe('old.iso')
  // the seeder's file was renamed on disk: the listing follows, segmentation and id unchanged
  const before = reg.files.get(file.hash)
  const renamed = reg.publish(node(1), { ...file, name: 'new.iso' }, 1)
  expect(renamed).toEqual({ ...before, name: 'new.iso' })
  expect(reg.files.list(undefined, 10).map((f) => f.name)).toEqual(['new.iso'])
  // a download that started before the rename finishes and publishes every piece under the old name: no rename back
  expect(reg.publish(node(3), { ...file, have: renamed.pieces }, 2).name).toBe('new.iso')
})

it('Registry.publish: a finished download (have = every piece) brings the root when the tracker has none; a partial one does not', () => {
  const reg = new Registry(undefined, 15_000)
  const node = (i: number): { nodeId: string, host: string, port: number } => ({ nodeId: String(i).padStart(32, '0'), host: '10.0.0.1', port: 1000 + i })
  const file = { name: 'f.bin', hash: 'cd'.repeat(32), size: 1 << 20 }
  const meta = reg.publish(node(1), file, 0) // (no root: say an old seeder)
  expect(meta.root).toBeUndefined()
  const root = 'ee'.repeat(32)
  expect(reg.publish(node(2), { ...file, blockSize: meta.blockSize, root, have: meta.pieces - 1 }, 0).root).toBeUndefined()
  expect(reg.publish(node(3), { ...file, blockSize: meta.blockSize, root, have: meta.pieces }, 0).root).toBe(root)
})
