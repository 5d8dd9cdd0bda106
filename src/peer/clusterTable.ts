import { MAX_PEERS_PER_REPLY } from '../limits'
import { peerKey, type PeerAddress } from '../protocol/messages'

/** Most files a cluster table tracks, most peers kept per file, and most entries in all. */
export const MAX_CLUSTER_FILES = 10_000
export const MAX_CLUSTER_PEERS = 4 * MAX_PEERS_PER_REPLY
export const MAX_CLUSTER_ENTRIES = 100_000

/**
 * A node's view of who holds what: fileId → peers (a cluster per file). Bounded: the oldest
 * entry of a full row makes room for a new one, and past MAX_CLUSTER_ENTRIES in all, the row
 * touched longest ago goes (rows × peers alone allowed 2.5 million entries, about a gigabyte,
 * which askers naming themselves for many files could fill). Pure data, no I/O.
 */
export class ClusterTable {
  /** Rows, the one touched longest ago first. */
  private readonly rows = new Map<string, Map<string, PeerAddress>>()
  private entries = 0

  add (fileId: string, peer: PeerAddress): void {
    let row = this.rows.get(fileId)
    if (row === undefined) {
      if (this.rows.size >= MAX_CLUSTER_FILES) this.dropRow(this.rows.keys().next().value as string)
      row = new Map()
    } else this.rows.delete(fileId)
    this.rows.set(fileId, row) // (newest last)
    // (by id and address: an asker naming another node's id must not move that node's entry to itself)
    const key = peerKey(peer)
    if (row.delete(key)) this.entries-- // re-insert: newest last
    row.set(key, peer)
    this.entries++
    if (row.size > MAX_CLUSTER_PEERS) { row.delete(row.keys().next().value as string); this.entries-- }
    while (this.entries > MAX_CLUSTER_ENTRIES) this.dropRow(this.rows.keys().next().value as string)
  }

  private dropRow (fileId: string): void {
    const row = this.rows.get(fileId)
    if (row === undefined) return
    this.entries -= row.size
    this.rows.delete(fileId)
  }

  /** The row for a file becomes exactly these peers (a fresh list from the tracker: the gone are gone). */
  replace (fileId: string, peers: PeerAddress[]): void {
    this.dropRow(fileId)
    for (const p of peers.slice(-MAX_CLUSTER_PEERS)) this.add(fileId, p)
  }

  remove (fileId: string, nodeId: string): void {
    const row = this.rows.get(fileId)
    if (row === undefined) return
    for (const [key, p] of row) if (p.nodeId === nodeId && row.delete(key)) this.entries--
    if (row.size === 0) this.rows.delete(fileId)
  }

  /** Forget a node in every row (it left or failed). */
  removeNode (nodeId: string): void {
    for (const fileId of [...this.rows.keys()]) this.remove(fileId, nodeId)
  }

  /** Up to `limit` peers for a file, newest first. */
  peers (fileId: string, limit = MAX_PEERS_PER_REPLY): PeerAddress[] {
    const row = this.rows.get(fileId)
    return row === undefined ? [] : [...row.values()].reverse().slice(0, limit)
  }

  get size (): number { return this.rows.size }
  /** Peers kept, over every row. */
  get entryCount (): number { return this.entries }
}
