import { ClusterTable, MAX_CLUSTER_ENTRIES, MAX_CLUSTER_PEERS } from '../../src/peer/clusterTable'

const P = (i: number): { nodeId: string, host: string, port: number } => ({ nodeId: i.toString(16).padStart(32, '0'), host: '127.0.0.1', port: 1000 + i })
const F = 'f'.repeat(64)

describe('ClusterTable', () => {
  it('lists a file\'s peers newest first, at most the limit', () => {
    const t = new ClusterTable()
    for (let i = 1; i <= 5; i++) t.add(F, P(i))
    expect(t.peers(F, 3).map((p) => p.port)).toEqual([1005, 1004, 1003])
  })

  it('keeps at most MAX_CLUSTER_PEERS per file, dropping the oldest', () => {
    const t = new ClusterTable()
    for (let i = 0; i < MAX_CLUSTER_PEERS + 10; i++) t.add(F, P(i))
    const all = t.peers(F, Infinity)
    expect(all).toHaveLength(MAX_CLUSTER_PEERS)
    expect(all.some((p) => p.port === 1000)).toBe(false)
  })

  it('replace makes the row exactly the given peers: the gone leave it', () => {
    const t = new ClusterTable()
    t.add(F, P(1)); t.add(F, P(2))
    t.replace(F, [P(2), P(3)])
    expect(t.peers(F).map((p) => p.port).sort()).toEqual([1002, 1003])
  })

  it('removeNode forgets a node in every row', () => {
    const t = new ClusterTable()
    const G = 'e'.repeat(64)
    t.add(F, P(1)); t.add(G, P(1)); t.add(G, P(2))
    t.removeNode(P(1).nodeId)
    expect(t.peers(F)).toEqual([])
    expect(t.peers(G)).toEqual([P(2)])
    expect(t.size).toBe(1)
  })

  it('keeps at most MAX_CLUSTER_ENTRIES peers in all: the row touched longest ago goes (rows × peers alone allowed 2.5 million)', () => {
    const t = new ClusterTable()
    const file = (k: number): string => k.toString(16).padStart(64, '0')
    const rows = Math.ceil(MAX_CLUSTER_ENTRIES / MAX_CLUSTER_PEERS) + 20
    for (let k = 0; k < rows; k++) {
      for (let i = 0; i < MAX_CLUSTER_PEERS; i++) t.add(file(k), P(i))
      if (k === 300) t.add(file(0), P(0)) // row 0 touched again (before the table is full): not the first to go
    }
    expect(t.entryCount).toBeLessThanOrEqual(MAX_CLUSTER_ENTRIES)
    expect(t.entryCount).toBeGreaterThan(MAX_CLUSTER_ENTRIES - MAX_CLUSTER_PEERS)
    expect(t.peers(file(0), Infinity)).toHaveLength(MAX_CLUSTER_PEERS)
    expect(t.peers(file(1))).toEqual([])
    expect(t.peers(file(rows - 1), Infinity)).toHaveLength(MAX_CLUSTER_PEERS)
    // and the count follows removals and replacements
    t.replace(file(rows - 1), [P(1)])
    t.removeNode(P(0).nodeId)
    let n = 0
    for (let k = 0; k < rows; k++) n += t.peers(file(k), Infinity).length
    expect(t.entryCount).toBe(n)
  })

  it('an asker naming another node\'s id at its own address does not move that node\'s entry: both are kept', () => {
    const t = new ClusterTable()
    t.add(F, P(1))
    const impostor = { ...P(1), host: '10.6.6.6' }
    t.add(F, impostor)
    expect(t.peers(F).sort((a, b) => a.host < b.host ? -1 : 1)).toEqual([impostor, P(1)])
    t.removeNode(P(1).nodeId)
    expect(t.peers(F)).toEqual([])
    expect(t.entryCount).toBe(0)
  })
})
