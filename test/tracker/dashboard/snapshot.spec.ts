import { DASHBOARD_MAX_FILES, DASHBOARD_MAX_NODES } from '../../../src/limits'
import { Registry } from '../../../src/tracker/registry'
import { buildSnapshot, probeTargets, shownFiles } from '../../../src/tracker/dashboard/snapshot'
import { NodeRates } from '../../../src/tracker/dashboard/rates'

const H = (c: string): string => c.repeat(64)
const hex = (i: number, width: number): string => i.toString(16).padStart(width, '0')
const node = (c: string, port = 7000): { nodeId: string, host: string, port: number } => ({ nodeId: c.repeat(32), host: '10.0.0.' + c.charCodeAt(0) % 250, port })
const MiB = 1024 * 1024

describe('buildSnapshot', () => {
  it('lists files with their holders (seeders and partial), the cluster, nodes with rates, and availability as a heatmap', () => {
    const reg = new Registry(undefined, 15_000)
    reg.publish(node('a'), { name: 'disk.img', hash: H('1'), size: 4 * MiB }, 0)
    reg.publish(node('b'), { name: 'disk.img', hash: H('1'), size: 4 * MiB, have: 3 }, 10)
    reg.publish(node('a'), { name: 'nobody.bin', hash: H('2'), size: MiB }, 0)
    reg.withdraw(node('a'), H('2'), 20)
    const rates = new NodeRates(3000)
    buildSnapshot(reg, rates, new Map(), 100)
    reg.announce(node('b'), 1, 3010, { uploaded: 0, downloaded: 3 * 256 * 1024 })
    const counts = new Uint16Array([2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    const s = buildSnapshot(reg, rates, new Map([[H('1'), { counts, probed: 2, answered: 2 }]]), 4000)
    expect(s.totals).toEqual({ files: 2, nodes: 2, uploaded: 0, downloaded: 786432, upRate: 0, downRate: 262144 })
    expect(s.files.map((f) => f.name)).toEqual(['disk.img', 'nobody.bin'])
    expect(s.files[0]).toMatchObject({ fileId: H('1'), pieces: 16, holders: 2, seeders: 1, partial: 1 })
    expect(s.files[0].cluster).toEqual([
      { nodeId: node('a').nodeId, address: '10.0.0.97:7000', have: 16 },
      { nodeId: node('b').nodeId, address: '10.0.0.98:7000', have: 3 },
    ])
    expect(s.files[0].availability).toEqual({ piecesPerCell: 1, min: [...counts], mean: [...counts], probed: 2, answered: 2 })
    // known but held by nobody: listed, no heatmap
    expect(s.files[1]).toMatchObject({ holders: 0, seeders: 0, partial: 0, cluster: [] })
    expect(s.files[1].availability).toBeUndefined()
    expect(s.nodes.find((n) => n.nodeId === node('b').nodeId)).toMatchObject({ ago: 990, downloaded: 786432, downRate: 262144, fileCount: 1 })
  })

  it('availability for another piece count (a stale round) is not shown', () => {
    const reg = new Registry(undefined, 15_000)
    reg.publish(node('a'), { name: 'x', hash: H('1'), size: MiB }, 0)
    const s = buildSnapshot(reg, new NodeRates(), new Map([[H('1'), { counts: new Uint16Array(7), probed: 1, answered: 1 }]]), 0)
    expect(s.files[0].availability).toBeUndefined()
  })

  it('is bounded: at most DASHBOARD_MAX_FILES files (held ones first) and DASHBOARD_MAX_NODES nodes', () => {
    const reg = new Registry(undefined, 15_000)
    for (let i = 0; i < DASHBOARD_MAX_NODES + 20; i++) reg.announce({ nodeId: hex(i, 32), host: '10.1.0.1', port: 1000 + i }, 0, 0)
    for (let i = 0; i < DASHBOARD_MAX_FILES + 10; i++) reg.publish({ nodeId: hex(i, 32), host: '10.1.0.1', port: 1000 + i }, { name: `f${i}`, hash: hex(i, 64), size: 1000 }, 0)
    // the last file is held by three nodes: it comes first, though its id sorts last
    const last = hex(DASHBOARD_MAX_FILES + 9, 64)
    for (const i of [1, 2]) reg.publish({ nodeId: hex(i, 32), host: '10.1.0.1', port: 1000 + i }, { name: 'x', hash: last, size: 1000 }, 0)
    const s = buildSnapshot(reg, new NodeRates(), new Map(), 0)
    expect(s.files).toHaveLength(DASHBOARD_MAX_FILES)
    expect(s.files[0]).toMatchObject({ fileId: last, holders: 3 })
    expect(s.nodes).toHaveLength(DASHBOARD_MAX_NODES)
    expect(s.totals).toMatchObject({ files: DASHBOARD_MAX_FILES + 10, nodes: DASHBOARD_MAX_NODES + 20 })
    expect(shownFiles(reg, 3).map((f) => f.hash)[0]).toBe(last)
  })

  it('probe targets: the most held files, each with at most `holders` of its live holders', () => {
    const reg = new Registry(undefined, 15_000)
    for (let i = 0; i < 5; i++) reg.publish({ nodeId: hex(i, 32), host: '10.1.0.1', port: 1000 + i }, { name: 'a', hash: H('a'), size: MiB }, 0)
    reg.publish({ nodeId: hex(9, 32), host: '10.1.0.2', port: 999 }, { name: 'b', hash: H('b'), size: MiB }, 0)
    const t = probeTargets(reg, 1, 3)
    expect(t).toEqual([{ fileId: H('a'), pieces: 4, holders: [0, 1, 2].map((i) => ({ nodeId: hex(i, 32), host: '10.1.0.1', port: 1000 + i })) }])
    expect(probeTargets(reg, 8, 64).map((x) => [x.fileId, x.holders.length])).toEqual([[H('a'), 5], [H('b'), 1]])
  })
})
