import { IndexedSet, MemoryFileStore, Registry, RegistryFullError } from '../../src/tracker/registry'
import { MAX_FILE_SIZE, MAX_PIECES, MAX_TRACKER_FILES_PER_NODE, MAX_TRACKER_NODES, UNHELD_ENTRY_STANDS_MS } from '../../src/limits'
import { MAX_FILES_PER_NODE_ITEM } from '../../src/protocol/messages'

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

it('Registry.sampleNodes: spread over hosts: hundreds of ids one host registered do not crowd the other hosts out of a sample; one host alone still gives distinct ids', () => {
  let x = 7
  const reg = new Registry(undefined, 15_000, () => { x = (x * 16807) % 2147483647; return x / 2147483647 })
  const file = { name: 'f.bin', hash: 'ab'.repeat(32), size: 1 << 20 }
  const id = (i: number): string => i.toString(16).padStart(32, '0')
  for (let i = 0; i < 600; i++) reg.publish({ nodeId: id(i), host: '10.6.6.6', port: 7299 }, file, 0)
  reg.publish({ nodeId: id(1000), host: '10.0.0.1', port: 7000 }, file, 0)
  reg.publish({ nodeId: id(1001), host: '10.0.0.2', port: 7000 }, file, 0)
  for (let d = 0; d < 50; d++) {
    const s = reg.sampleNodes(file.hash, 16)
    expect(s).toHaveLength(16)
    expect(new Set(s.map((n) => n.nodeId)).size).toBe(16)
    expect(s.map((n) => n.host)).toEqual(expect.arrayContaining(['10.0.0.1', '10.0.0.2']))
  }
  // the sybils go (expire, leave): the others are sampled as before
  for (let i = 0; i < 600; i++) reg.leave({ nodeId: id(i), host: '10.6.6.6', port: 7299 }, 1)
  expect(reg.sampleNodes(file.hash, 16).map((n) => n.nodeId).sort()).toEqual([id(1000), id(1001)])
  // one host (a loopback swarm): distinct ids, spread over all of them across draws
  const lo = new Registry(undefined, 15_000, () => { x = (x * 16807) % 2147483647; return x / 2147483647 })
  for (let i = 0; i < 40; i++) lo.publish({ nodeId: id(i), host: '127.0.0.1', port: 7000 + i }, file, 0)
  const seen = new Set<string>()
  for (let d = 0; d < 20; d++) {
    const s = lo.sampleNodes(file.hash, 8)
    expect(new Set(s.map((n) => n.nodeId)).size).toBe(8)
    for (const n of s) seen.add(n.nodeId)
  }
  expect(seen.size).toBeGreaterThan(30)
  // two hosts of 10: half each
  const two = new Registry(undefined, 15_000, () => { x = (x * 16807) % 2147483647; return x / 2147483647 })
  for (let i = 0; i < 20; i++) two.publish({ nodeId: id(i), host: i < 10 ? '10.0.0.1' : '10.0.0.2', port: 7000 + i }, file, 0)
  const s = two.sampleNodes(file.hash, 16)
  expect(s.filter((n) => n.host === '10.0.0.1')).toHaveLength(8)
})

it('a node\'s id speaks only from the UDP port it spoke from: another process of its host cannot move it, withdraw its files or make it leave', () => {
  const reg = new Registry(undefined, 15_000)
  const file = { name: 'f.bin', hash: 'ab'.repeat(32), size: 1 << 20 }
  const seeder = { nodeId: 'a'.repeat(32), host: '10.0.0.1', port: 7000, via: 40_001 }
  reg.publish(seeder, file, 0)
  const spoof = { ...seeder, via: 40_002 }
  expect(() => reg.announce({ ...spoof, port: 1 }, 1, 1)).toThrow(/in use from another address/)
  expect(() => reg.withdraw(spoof, file.hash, 1)).toThrow(/in use from another address/)
  reg.leave(spoof, 1)
  expect(reg.sampleNodes(file.hash, 4)).toEqual([expect.objectContaining({ nodeId: seeder.nodeId, port: 7000 })])
  // the node itself: moves, withdraws, leaves
  reg.announce({ ...seeder, port: 7001 }, 1, 2)
  expect(reg.sampleNodes(file.hash, 4)).toEqual([expect.objectContaining({ port: 7001 })])
  reg.leave({ ...seeder, port: 7001 }, 3)
  expect(reg.sampleNodes(file.hash, 4)).toEqual([])
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

it('Registry.publish: another sharer cannot rename a file its live namer shares, not even after repeating its name first (a name could be taken over, then given to other bytes); once the namer is gone, it can', () => {
  const reg = new Registry(undefined, 15_000)
  const node = (i: number): { nodeId: string, host: string, port: number } => ({ nodeId: String(i).padStart(32, '0'), host: `10.0.0.${i}`, port: 1000 + i })
  const file = { name: 'data.bin', hash: 'ab'.repeat(32), size: 1 << 20 }
  reg.publish(node(1), file, 0)
  expect(reg.publish(node(2), file, 1).name).toBe('data.bin') // (the same name: a holder more)
  expect(reg.publish(node(2), { ...file, name: 'data.bin.old' }, 2).name).toBe('data.bin')
  expect(reg.files.get(file.hash)?.name).toBe('data.bin')
  // the namer renames its own file: followed
  expect(reg.publish(node(1), { ...file, name: 'data-v1.bin' }, 3).name).toBe('data-v1.bin')
  // the namer leaves: the next sharer's name is taken
  reg.leave(node(1), 4)
  expect(reg.publish(node(2), { ...file, name: 'data.bin.old' }, 5).name).toBe('data.bin.old')
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

it('a heartbeat asks for a re-publish only when the tracker holds fewer of the node\'s files than it says (not more: publishes on their way, withdraws being retried)', () => {
  const reg = new Registry(undefined, 15_000)
  const n = { nodeId: 'a'.repeat(32), host: '10.0.0.1', port: 1 }
  const h = (i: number): string => i.toString(16).padStart(64, '0')
  expect(reg.announce(n, 2, 0)).toBe(true) // unknown (a restarted tracker): everything again
  reg.publish(n, { name: 'a', hash: h(1), size: 1 }, 0)
  reg.publish(n, { name: 'b', hash: h(2), size: 1 }, 0)
  expect(reg.announce(n, 2, 1)).toBe(false)
  expect(reg.announce(n, 3, 2)).toBe(true)
  expect(reg.announce(n, 1, 3)).toBe(false)
})

describe('Registry: what a client may not do to others', () => {
  const id = (i: number): string => String(i).padStart(32, '0')
  const hash = (i: number): string => i.toString(16).padStart(64, '0')

  it('a live node id used from another host is refused and changes nothing (ids are public); another port of its host is the node moved; after its TTL the id is free', () => {
    const reg = new Registry(undefined, 15_000)
    const victim = { nodeId: id(1), host: '10.0.0.1', port: 4000 }
    reg.publish(victim, { name: 'v.bin', hash: hash(1), size: 1 << 20 }, 0)
    const thief = { ...victim, host: '10.0.0.2', port: 6666 }
    expect(() => reg.announce(thief, 0, 1)).toThrow(/in use from another address/)
    expect(() => reg.publish(thief, { name: 'x.bin', hash: hash(2), size: 1 }, 1)).toThrow(/in use from another address/)
    expect(() => reg.withdraw(thief, hash(1), 1)).toThrow(/in use from another address/)
    reg.leave(thief, 1)
    expect(reg.files.get(hash(2))).toBeUndefined() // the refused publish left no file behind
    expect(reg.listNodes(undefined, undefined, 10)).toMatchObject([{ nodeId: id(1), host: '10.0.0.1', port: 4000, files: [{ fileId: hash(1) }] }])
    reg.announce({ ...victim, port: 4001 }, 1, 2)
    expect(reg.listNodes(undefined, undefined, 10)).toMatchObject([{ host: '10.0.0.1', port: 4001 }])
    reg.expire(20_000)
    reg.announce(thief, 0, 20_001)
    expect(reg.listNodes(undefined, undefined, 10)).toMatchObject([{ host: '10.0.0.2', port: 6666, files: [] }])
  })

  it('one node holds at most MAX_TRACKER_FILES_PER_NODE files (one id filled the whole registry, and every new honest file was refused); others still publish', () => {
    const reg = new Registry(undefined, 15_000)
    const greedy = { nodeId: id(1), host: '10.0.0.1', port: 1 }
    for (let i = 0; i < MAX_TRACKER_FILES_PER_NODE; i++) reg.publish(greedy, { name: `j${i}`, hash: hash(i), size: 1 }, 0)
    expect(() => reg.publish(greedy, { name: 'one more', hash: hash(MAX_TRACKER_FILES_PER_NODE), size: 1 }, 0)).toThrow(expect.objectContaining({ code: 'FULL', message: expect.stringMatching(/a node may hold at most/) }))
    expect(reg.files.get(hash(MAX_TRACKER_FILES_PER_NODE))).toBeUndefined() // (refused: nothing changed)
    reg.publish(greedy, { name: 'j0', hash: hash(0), size: 1 }, 1) // (one it holds: published again as before)
    expect(reg.publish({ nodeId: id(2), host: '10.0.0.2', port: 1 }, { name: 'honest', hash: hash(10 ** 7), size: 1 }, 1).name).toBe('honest')
    // and listing such a node copies only the few files its entry shows
    expect(reg.listNodes(undefined, undefined, 10)[0].files).toHaveLength(MAX_FILES_PER_NODE_ITEM)
  })

  it('node ids that came and went do not pile up waiting for a full listing (a million: 58 MB for good)', () => {
    const reg = new Registry(undefined, 1000)
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 1000; i++) reg.announce({ nodeId: id(round * 1000 + i), host: '10.0.0.1', port: 1 }, 0, round * 10_000)
      reg.expire(round * 10_000 + 5000)
    }
    expect(reg.nodeCount).toBe(0)
    expect((reg as unknown as { joined: string[] }).joined.length).toBeLessThanOrEqual(2048)
    expect(reg.listNodes(undefined, undefined, 10)).toEqual([])
  })

  it('heldFiles: the files most held, ties by id, the same as sorting them all', () => {
    const reg = new Registry(undefined, 15_000)
    let seed = 7
    const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
    for (let f = 0; f < 300; f++) {
      const holders = Math.floor(rnd() * 6)
      for (let k = 0; k < holders; k++) reg.publish({ nodeId: id(1000 + k), host: `10.0.1.${k}`, port: 1 }, { name: `f${f}`, hash: hash(f), size: 1 }, 0)
    }
    const all = [...Array(300).keys()].map((f) => ({ fileId: hash(f), holders: reg.holderCount(hash(f)) })).filter((x) => x.holders > 0)
    const sorted = all.sort((a, b) => b.holders - a.holders || (a.fileId < b.fileId ? -1 : 1))
    for (const limit of [0, 1, 7, 50, 1000]) expect(reg.heldFiles(limit)).toEqual(sorted.slice(0, limit))
  })

  it('a live node id claimed from another address is refused with ID_IN_USE (the node takes a new id on it)', () => {
    const reg = new Registry(undefined, 15_000)
    reg.announce({ nodeId: id(1), host: '10.0.0.1', port: 1 }, 0, 0)
    expect(() => reg.announce({ nodeId: id(1), host: '10.0.0.2', port: 1 }, 0, 1)).toThrow(expect.objectContaining({ code: 'ID_IN_USE' }))
  })

  it('a withdraw from a node the tracker does not know changes nothing (no node appears)', () => {
    const reg = new Registry(undefined, 15_000)
    reg.withdraw({ nodeId: id(9), host: '10.0.0.9', port: 1 }, hash(1), 0)
    expect(reg.nodeCount).toBe(0)
  })

  it('a full registry forgets the file unheld for the longest to take a new one; with every file held (by hosts no bigger than the publisher\'s, give or take one), a new one is refused (FULL) and nothing changes', () => {
    const reg = new Registry(undefined, 15_000, Math.random, 3)
    const a = { nodeId: id(1), host: '10.0.0.1', port: 1 }
    const b = { nodeId: id(2), host: '10.0.0.2', port: 2 }
    for (const i of [1, 3]) reg.publish(a, { name: `f${i}`, hash: hash(i), size: 1000 }, 0)
    reg.publish(b, { name: 'f2', hash: hash(2), size: 1000 }, 0)
    // (every file held, a's host holds 2, b's 1: a giving one up would leave b with more)
    expect(() => reg.publish(b, { name: 'f4', hash: hash(4), size: 1000 }, 0)).toThrow(RegistryFullError)
    expect(reg.nodeCount).toBe(2)
    expect(reg.files.list(undefined, 10).map((f) => f.name)).toEqual(['f1', 'f2', 'f3'])
    expect(reg.listNodes(undefined, undefined, 10).map((n) => n.fileCount)).toEqual([2, 1])
    // f2 then f1 lose their holder: f2 is the one unheld the longest, forgotten once the minute it
    // stands for its holders to come back is over
    const S = UNHELD_ENTRY_STANDS_MS
    reg.withdraw(b, hash(2), 1)
    reg.withdraw(a, hash(1), 2)
    expect(() => reg.publish(b, { name: 'f4', hash: hash(4), size: 1000 }, S)).toThrow(RegistryFullError)
    reg.publish(b, { name: 'f4', hash: hash(4), size: 1000 }, S + 1)
    expect(reg.files.list(undefined, 10).map((f) => f.name)).toEqual(['f1', 'f3', 'f4'])
    // a file held again is not forgotten: f1 is republished, so f3's holder leaving makes f3 the one
    reg.publish(b, { name: 'f1', hash: hash(1), size: 1000 }, S + 4)
    reg.leave(a, S + 4)
    reg.publish(b, { name: 'f5', hash: hash(5), size: 1000 }, 2 * S + 5)
    expect(reg.files.list(undefined, 10).map((f) => f.name)).toEqual(['f1', 'f4', 'f5'])
  })

  it('a full registry takes a new file from a host holding fewer by forgetting one of the biggest host\'s (one host under many node ids filled it before, and every honest new file was refused)', () => {
    const reg = new Registry(undefined, 15_000, Math.random, 50)
    const sybil = (k: number): { nodeId: string, host: string, port: number } => ({ nodeId: id(100 + k), host: '10.6.6.6', port: k })
    for (let k = 0; k < 5; k++) for (let i = 0; i < 10; i++) reg.publish(sybil(k), { name: `junk${k}-${i}`, hash: hash(1000 + 10 * k + i), size: 1 }, 0)
    // a small host also holds one of them: that file is not forgotten for anyone
    const small = { nodeId: id(7), host: '10.0.0.7', port: 1 }
    reg.publish(small, { name: 'shared', hash: hash(1000), size: 1 }, 0)
    expect(reg.files.size).toBe(50)
    const honest = { nodeId: id(1), host: '10.0.0.1', port: 1 }
    for (let i = 0; i < 20; i++) expect(reg.publish(honest, { name: `honest${i}`, hash: hash(i), size: 1 }, 1).name).toBe(`honest${i}`)
    expect(reg.files.size).toBe(50)
    const names = reg.files.list(undefined, 100).map((f) => f.name)
    expect(names.filter((n) => n.startsWith('honest'))).toHaveLength(20)
    expect(names).toContain('junk0-0') // (held by the small host too)
    expect(reg.holderCount(hash(1000))).toBe(2)
    // what a sybil id held and lost, it is told to publish again; publishing it is refused: its host is the biggest
    const lost = [...Array(10).keys()].filter((i) => reg.files.get(hash(1000 + i)) === undefined)
    expect(lost.length).toBeGreaterThan(0)
    expect(reg.announce(sybil(0), 10, 2)).toBe(true)
    expect(() => reg.publish(sybil(0), { name: 'again', hash: hash(1000 + lost[0]), size: 1 }, 2)).toThrow(RegistryFullError)
    expect(reg.files.get(hash(1000 + lost[0]))).toBeUndefined() // (refused: nothing changed)
    // the honest host now holds 20 and the sybil host 30: one more honest file still goes in; the
    // sybil host is never pushed below the publisher's level (20 + 1 against 30 − 1 …)
    for (let i = 20; i < 40; i++) {
      try { reg.publish(honest, { name: `honest${i}`, hash: hash(i), size: 1 }, 3) } catch (e) { expect(e).toBeInstanceOf(RegistryFullError); break }
    }
    const byHost = (h: string): number => reg.listNodes(undefined, undefined, 100).filter((n) => n.host === h).reduce((a, n) => a + n.fileCount, 0)
    const honestCount = byHost('10.0.0.1')
    expect(honestCount).toBe(25)
    expect(reg.files.size - honestCount).toBe(25) // the sybil host's files (one of them also the small host's)
  })

  it('a registry kept across a restart counts its files as unheld until published again: a full one takes new files once the minute they stand is over (not before: a squatter pushed them out with new ids, then published them anew with a junk size)', () => {
    const store = new MemoryFileStore()
    for (const i of [1, 2]) store.put({ name: `f${i}`, hash: hash(i), size: 1000, blockSize: 262144, pieces: 1 })
    const start = 5_000_000
    const reg = new Registry(store, 15_000, Math.random, 2, start)
    reg.publish({ nodeId: id(1), host: '10.0.0.1', port: 1 }, { name: 'f2', hash: hash(2), size: 1000 }, start)
    const squatter = { nodeId: id(6), host: '10.6.6.6', port: 1 }
    expect(() => reg.publish(squatter, { name: 'f3', hash: hash(3), size: 1000 }, start + 10)).toThrow(RegistryFullError)
    expect(() => reg.publish(squatter, { name: 'f1', hash: hash(1), size: 12 }, start + 20)).toThrow(/does not match/)
    reg.publish({ nodeId: id(1), host: '10.0.0.1', port: 1 }, { name: 'f3', hash: hash(3), size: 1000 }, start + UNHELD_ENTRY_STANDS_MS)
    expect(reg.files.list(undefined, 10).map((f) => f.name)).toEqual(['f2', 'f3'])
  })

  it('a file bigger than a bitfield can describe is refused (its piece counters would cost gigabytes)', () => {
    const reg = new Registry(undefined, 15_000)
    expect(() => reg.publish({ nodeId: id(1), host: '10.0.0.1', port: 1 }, { name: 'huge', hash: hash(1), size: MAX_FILE_SIZE + 1 }, 0)).toThrow(/more than the/)
    expect(reg.files.size).toBe(0)
    expect(reg.publish({ nodeId: id(1), host: '10.0.0.1', port: 1 }, { name: 'big', hash: hash(2), size: MAX_FILE_SIZE }, 0)).toMatchObject({ blockSize: 8 << 20, pieces: MAX_PIECES })
  })

  it('a publish refused because the node table is full changes nothing: no file stored, none forgotten', () => {
    const reg = new Registry(undefined, 15_000, Math.random, 1)
    const a = { nodeId: 'f'.repeat(32), host: '10.0.0.1', port: 1 }
    reg.publish(a, { name: 'old', hash: hash(1), size: 1000 }, 0)
    reg.withdraw(a, hash(1), 0) // unheld: the one a new file would push out
    for (let i = reg.nodeCount; i < MAX_TRACKER_NODES; i++) reg.announce({ nodeId: id(i), host: '10.1.0.1', port: 2 }, 0, 0)
    expect(() => reg.publish({ nodeId: 'e'.repeat(32), host: '10.0.0.2', port: 3 }, { name: 'new', hash: hash(2), size: 1000 }, 0)).toThrow(/too many nodes/)
    expect(reg.files.list(undefined, 10).map((f) => f.name)).toEqual(['old'])
    // a known node may still publish: the unheld file makes room (once it no longer stands)
    reg.publish(a, { name: 'new', hash: hash(2), size: 1000 }, UNHELD_ENTRY_STANDS_MS)
    expect(reg.files.list(undefined, 10).map((f) => f.name)).toEqual(['new'])
  })

  it('listNodes stays in id order through joins, leaves, a node gone and back, and a mass expiry', () => {
    const reg = new Registry(undefined, 15_000)
    const at = (i: number): { nodeId: string, host: string, port: number } => ({ nodeId: id(i), host: `10.0.${i >> 8}.${i & 255}`, port: 1 })
    for (let i = 999; i >= 0; i--) reg.announce(at(i), 0, i < 500 ? 0 : 10_000)
    expect(reg.listNodes(undefined, undefined, 2000).map((n) => n.nodeId)).toEqual(Array.from({ length: 1000 }, (_, i) => id(i)))
    reg.leave(at(7), 10_000)
    reg.announce(at(7), 0, 10_000) // gone and back before the next listing
    reg.announce(at(1234), 0, 10_000)
    reg.expire(16_000) // 0–499 except 7 were last seen at 0
    const ids = reg.listNodes(undefined, undefined, 2000).map((n) => n.nodeId)
    expect(ids).toEqual([id(7), ...Array.from({ length: 500 }, (_, i) => id(500 + i)), id(1234)])
    expect(reg.listNodes(undefined, id(998), 10).map((n) => n.nodeId)).toEqual([id(999), id(1234)])
  })

  it('listNodes pages live nodes in id order as they come and go', () => {
    const reg = new Registry(undefined, 15_000)
    const order = [7, 3, 9, 1, 5]
    order.forEach((i, t) => reg.announce({ nodeId: id(i), host: `10.0.0.${i}`, port: i }, 0, t * 1000))
    expect(reg.listNodes(undefined, undefined, 3).map((n) => n.nodeId)).toEqual([id(1), id(3), id(5)])
    expect(reg.listNodes(undefined, id(5), 3).map((n) => n.nodeId)).toEqual([id(7), id(9)])
    reg.leave({ nodeId: id(3), host: '10.0.0.3', port: 3 }, 5000)
    reg.expire(15_500) // 7 (seen at 0) goes
    expect(reg.listNodes(undefined, undefined, 10).map((n) => n.nodeId)).toEqual([id(1), id(5), id(9)])
  })
})

describe('Registry.publish: claims stand while their node is live, and a minute after', () => {
  const node = (i: number): { nodeId: string, host: string, port: number } => ({ nodeId: String(i).padStart(32, '0'), host: `10.0.0.${i}`, port: 1000 + i })
  const hash = 'ab'.repeat(32)
  const later = UNHELD_ENTRY_STANDS_MS

  it('a wrong size published first blocks the real one while its publisher is live and a minute after; then the real one replaces it', () => {
    const reg = new Registry(undefined, 15_000)
    reg.publish(node(1), { name: 'x.iso', hash, size: 12345 }, 0) // the squatter
    expect(() => reg.publish(node(2), { name: 'x.iso', hash, size: 3_000_000 }, 1)).toThrow(/does not match/)
    reg.leave(node(1), 2)
    expect(() => reg.publish(node(2), { name: 'x.iso', hash, size: 3_000_000 }, 2 + later - 1)).toThrow(/does not match/)
    const meta = reg.publish(node(2), { name: 'x.iso', hash, size: 3_000_000 }, 2 + later)
    expect(meta.size).toBe(3_000_000)
    expect(reg.files.get(hash)?.size).toBe(3_000_000)
    expect(reg.sampleNodes(hash, 10).map((n) => n.nodeId)).toEqual([node(2).nodeId])
  })

  it('a junk root from a first complete holder gives way to the real one once that holder is gone for a minute; not before', () => {
    const reg = new Registry(undefined, 15_000)
    const first = reg.publish(node(1), { name: 'x.iso', hash, size: 1 << 20 }, 0) // learns the block size
    reg.publish(node(1), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '11'.repeat(32) }, 0)
    expect(reg.files.get(hash)?.root).toBe('11'.repeat(32))
    reg.publish(node(2), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '22'.repeat(32) }, 1)
    expect(reg.files.get(hash)?.root).toBe('11'.repeat(32))
    reg.expire(20_000) // both went silent; the honest one comes back first
    reg.publish(node(2), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '22'.repeat(32) }, 20_001)
    expect(reg.files.get(hash)?.root).toBe('11'.repeat(32)) // (unheld since 20 s: the entry stands a minute)
    // the honest node offers its root again (a node does, every 30 s, while it is listed under another)
    reg.publish(node(2), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '22'.repeat(32) }, 20_000 + later / 2)
    expect(reg.files.get(hash)?.root).toBe('11'.repeat(32))
    reg.publish(node(2), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '22'.repeat(32) }, 20_000 + later)
    expect(reg.files.get(hash)?.root).toBe('22'.repeat(32))
    // and now the squatter is the one refused
    reg.publish(node(1), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '11'.repeat(32) }, 20_000 + later + 1)
    expect(reg.files.get(hash)?.root).toBe('22'.repeat(32))
  })

  it('a junk root gives way once its publisher is gone also when several honest sharers hold the file (each counted as backing the junk root for the other before)', () => {
    const reg = new Registry(undefined, 15_000)
    const first = reg.publish(node(1), { name: 'x.iso', hash, size: 1 << 20 }, 0)
    const junk = { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '11'.repeat(32) }
    const real = { ...junk, root: '22'.repeat(32) }
    reg.publish(node(1), junk, 0)
    reg.publish(node(2), real, 1)
    reg.publish(node(3), real, 1)
    reg.publish(node(2), real, 2) // (the squatter is live: it stands)
    expect(reg.files.get(hash)?.root).toBe(junk.root)
    reg.leave(node(1), 3)
    reg.publish(node(2), real, 30_000) // node 2's next offer
    expect(reg.files.get(hash)?.root).toBe(real.root)
    // node 3 agrees with it now (its next publish): it backs the root against the squatter's return
    reg.publish(node(3), real, 30_001)
    reg.leave(node(2), 30_002)
    reg.publish(node(1), junk, 30_003)
    expect(reg.files.get(hash)?.root).toBe(real.root)
  })

  it('after a restart, an entry the store kept stands a minute against contradicting claims: a squatter racing the real holders back loses', () => {
    const store = new MemoryFileStore()
    const before = new Registry(store, 15_000)
    const first = before.publish(node(1), { name: 'x.iso', hash, size: 1 << 20 }, 0)
    const meta = before.publish(node(1), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '22'.repeat(32) }, 0)
    const start = 1_000_000
    const reg = new Registry(store, 15_000, Math.random, undefined, start) // restarted: same files, no nodes
    expect(() => reg.publish(node(9), { name: 'x.iso', hash, size: 777 }, start + 10)).toThrow(/does not match/)
    reg.publish(node(9), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '99'.repeat(32) }, start + 20)
    expect(reg.files.get(hash)).toEqual(meta)
    // the real holder is back (its next heartbeat): it backs the entry from then on
    reg.publish(node(1), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '22'.repeat(32) }, start + 6_000)
    expect(() => reg.publish(node(9), { name: 'x.iso', hash, size: 777 }, start + later + 1)).toThrow(/does not match/)
    expect(reg.files.get(hash)).toEqual(meta)
    // nobody came back for a minute: the entry gives way, as before
    const fresh = new Registry(store, 15_000, Math.random, undefined, start)
    expect(fresh.publish(node(9), { name: 'x.iso', hash, size: 777 }, start + later).size).toBe(777)
  })

  it('a sharer renames its own file; another sharer cannot rename it while the first is live', () => {
    const reg = new Registry(undefined, 15_000)
    reg.publish(node(1), { name: 'old.iso', hash, size: 1 << 20 }, 0)
    expect(reg.publish(node(2), { name: 'evil.iso', hash, size: 1 << 20 }, 1).name).toBe('old.iso')
    expect(reg.publish(node(1), { name: 'new.iso', hash, size: 1 << 20 }, 2).name).toBe('new.iso')
    reg.leave(node(1), 3)
    expect(reg.publish(node(2), { name: 'other.iso', hash, size: 1 << 20 }, 3).name).toBe('other.iso')
  })

  it('once the first publisher is gone, the other live holders still back the entry: a finished download the root, any holder the size', () => {
    const reg = new Registry(undefined, 15_000)
    const first = reg.publish(node(1), { name: 'x.iso', hash, size: 1 << 20 }, 0)
    reg.publish(node(1), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '22'.repeat(32) }, 0)
    reg.publish(node(2), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '22'.repeat(32), have: first.pieces }, 1) // finished download
    reg.publish(node(3), { name: 'x.iso', hash, size: 1 << 20, have: 1 }, 1) // half way
    reg.leave(node(1), 2)
    expect(() => reg.publish(node(9), { name: 'x.iso', hash, size: 12345 }, 2)).toThrow(/does not match/)
    reg.publish(node(9), { name: 'x.iso', hash, size: 1 << 20, blockSize: first.blockSize, root: '99'.repeat(32) }, 2)
    expect(reg.files.get(hash)).toMatchObject({ size: 1 << 20, root: '22'.repeat(32) })
    expect(reg.sampleNodes(hash, 10).map((n) => n.nodeId).sort()).toEqual([node(2).nodeId, node(3).nodeId, node(9).nodeId])
    // with only a partial holder left, the size still stands (the root does not: no one checked it)
    reg.leave(node(2), 3); reg.leave(node(9), 3)
    expect(() => reg.publish(node(8), { name: 'x.iso', hash, size: 777 }, 3)).toThrow(/does not match/)
  })

  it('a publish refused for another reason changes nothing, also when it would have replaced the entry', () => {
    const reg = new Registry(undefined, 15_000)
    const meta = reg.publish(node(1), { name: 'x.iso', hash, size: 1 << 20 }, 0)
    reg.leave(node(1), 1)
    expect(() => reg.publish(node(9), { name: 'x.iso', hash, size: 1000, have: 999_999 }, 1 + later)).toThrow(/have/)
    expect(reg.files.get(hash)).toEqual(meta)
  })

  it('after a restart (entries from the store, no claims) the first publish that agrees stands behind the entry', () => {
    const store = new MemoryFileStore()
    const before = new Registry(store, 15_000)
    const meta = before.publish(node(1), { name: 'x.iso', hash, size: 1 << 20 }, 0)
    const reg = new Registry(store, 15_000) // restarted: same files, no nodes
    reg.publish(node(1), { name: 'x.iso', hash, size: 1 << 20 }, later + 1) // (back late: past the minute the entry stands alone)
    expect(() => reg.publish(node(3), { name: 'x.iso', hash, size: 999 }, later + 2)).toThrow(/does not match/)
    expect(reg.files.get(hash)).toEqual(meta)
  })
})
