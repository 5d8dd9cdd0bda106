import { DASHBOARD_MAX_FILES, DASHBOARD_MAX_NODES, DASHBOARD_PROBE_FILES, DASHBOARD_PROBE_HOLDERS, MAX_PIECES } from '../../limits'
import type { FileMetaData, PeerAddress } from '../../protocol/messages'
import type { Registry } from '../registry'
import { heatmap, type Availability, type Heatmap, type ProbeTarget } from './availability'
import type { NodeRates } from './rates'

/** What the snapshot reads of the registry (read-only). */
export type RegistryView = Pick<Registry, 'files' | 'nodeCount' | 'holderCount' | 'heldFiles' | 'listNodes' | 'counterTotals'>

export interface ClusterMember { nodeId: string, address: string, have: number }

export interface FileRow {
  name: string
  fileId: string
  size: number
  blockSize: number
  pieces: number
  /** Live holders in all; seeders and partial holders among the `cluster` listed. */
  holders: number
  seeders: number
  partial: number
  /** The file's cluster: its live holders (the first DASHBOARD_PROBE_HOLDERS by id). */
  cluster: ClusterMember[]
  /** From the last probe round, for the most held files while a browser watches. */
  availability?: Heatmap & { probed: number, answered: number }
}

export interface NodeRow {
  nodeId: string
  address: string
  /** Milliseconds since its last heartbeat or publish. */
  ago: number
  uploaded: number
  downloaded: number
  /** Bytes/s, from the deltas between its heartbeats; null until two heartbeats were seen. */
  upRate: number | null
  downRate: number | null
  fileCount: number
}

export interface DashboardSnapshot {
  at: number
  totals: { files: number, nodes: number, uploaded: number, downloaded: number, upRate: number, downRate: number }
  /** Rows are capped (DASHBOARD_MAX_FILES / _NODES): the page says when some are left out. */
  files: FileRow[]
  nodes: NodeRow[]
  limits: { files: number, nodes: number, probedFiles: number, probedHolders: number }
}

const addr = (p: PeerAddress): string => p.host.includes(':') ? `[${p.host}]:${p.port}` : `${p.host}:${p.port}`

/** The files shown: those with live holders (most held first), then known files without any, up to the cap. */
export function shownFiles (reg: RegistryView, limit = DASHBOARD_MAX_FILES): FileMetaData[] {
  const out: FileMetaData[] = []
  const ids = new Set<string>()
  for (const { fileId } of reg.heldFiles(limit)) {
    const m = reg.files.get(fileId)
    if (m !== undefined) { out.push(m); ids.add(fileId) }
  }
  if (out.length < limit) for (const m of reg.files.list(undefined, limit)) if (out.length < limit && !ids.has(m.hash)) out.push(m)
  return out
}

/** The files to probe for the heatmap (the most held ones) and their live holders. */
export function probeTargets (reg: RegistryView, files = DASHBOARD_PROBE_FILES, holders = DASHBOARD_PROBE_HOLDERS): ProbeTarget[] {
  return reg.heldFiles(files).flatMap(({ fileId }) => {
    const m = reg.files.get(fileId)
    // (a piece counter each: never more than a bitfield carries)
    if (m === undefined || m.pieces > MAX_PIECES) return []
    return [{ fileId, pieces: m.pieces, holders: reg.listNodes(fileId, undefined, holders).map((n) => ({ nodeId: n.nodeId, host: n.host, port: n.port })) }]
  })
}

/**
 * The dashboard's view of the tracker: a pure function of the registry, the nodes' rates and the
 * last availability round. Bounded: at most DASHBOARD_MAX_FILES files and DASHBOARD_MAX_NODES
 * nodes, DASHBOARD_PROBE_HOLDERS cluster members per file, DASHBOARD_HEATMAP_CELLS cells per heatmap.
 */
export function buildSnapshot (reg: RegistryView, rates: NodeRates, availability: ReadonlyMap<string, Availability>, now: number): DashboardSnapshot {
  const files = shownFiles(reg).map((m): FileRow => {
    const cluster = reg.listNodes(m.hash, undefined, DASHBOARD_PROBE_HOLDERS).map((n) => ({
      nodeId: n.nodeId,
      address: addr(n),
      // a node holding many files lists only its first ones: unknown counts as nothing
      have: n.files.find((f) => f.fileId === m.hash)?.have ?? 0,
    }))
    const seeders = cluster.filter((c) => c.have >= m.pieces).length
    const row: FileRow = { name: m.name, fileId: m.hash, size: m.size, blockSize: m.blockSize, pieces: m.pieces, holders: reg.holderCount(m.hash), seeders, partial: cluster.length - seeders, cluster }
    const a = availability.get(m.hash)
    if (a !== undefined && a.counts.length === m.pieces) row.availability = { ...heatmap(a.counts), probed: a.probed, answered: a.answered }
    return row
  })
  const infos = reg.listNodes(undefined, undefined, DASHBOARD_MAX_NODES)
  const r = rates.observe(infos, now)
  const nodes = infos.map((n): NodeRow => {
    const rate = r.get(n.nodeId) ?? null
    return { nodeId: n.nodeId, address: addr(n), ago: Math.max(0, now - n.lastSeen), uploaded: n.uploaded, downloaded: n.downloaded, upRate: rate === null ? null : Math.round(rate.up), downRate: rate === null ? null : Math.round(rate.down), fileCount: n.fileCount }
  })
  const t = reg.counterTotals()
  return {
    at: now,
    totals: { files: reg.files.size, nodes: reg.nodeCount, uploaded: t.uploaded, downloaded: t.downloaded, upRate: nodes.reduce((s, n) => s + (n.upRate ?? 0), 0), downRate: nodes.reduce((s, n) => s + (n.downRate ?? 0), 0) },
    files,
    nodes,
    limits: { files: DASHBOARD_MAX_FILES, nodes: DASHBOARD_MAX_NODES, probedFiles: DASHBOARD_PROBE_FILES, probedHolders: DASHBOARD_PROBE_HOLDERS },
  }
}
