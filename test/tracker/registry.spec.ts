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
