import { ClusterTable, MAX_CLUSTER_PEERS } from '../../src/peer/clusterTable'

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
})
