import { MAX_PEERS_PER_REPLY } from '../limits'
import type { PeerAddress } from '../protocol/messages'

/** Most files a cluster table tracks, and most peers kept per file. */
export const MAX_CLUSTER_FILES = 10_000
export const MAX_CLUSTER_PEERS = 4 * MAX_PEERS_PER_REPLY

/**
 * A node's view of who holds what: fileId → peers (a cluster per file). Bounded: the oldest
 * entry of a full row makes room for a new one. Pure data, no I/O.
 */
export class ClusterTable {
  private readonly rows = new Map<string, Map<string, PeerAddress>>()

  add (fileId: string, peer: PeerAddress): void {
    let row = this.rows.get(fileId)
    if (row === undefined) {
      if (this.rows.size >= MAX_CLUSTER_FILES) this.rows.delete(this.rows.keys().next().value as string)
      row = new Map()
      this.rows.set(fileId, row)
    }
    row.delete(peer.nodeId) // re-insert: newest last
    row.set(peer.nodeId, peer)
    if (row.size > MAX_CLUSTER_PEERS) row.delete(row.keys().next().value as string)
  }

  /** The row for a file becomes exactly these peers (a fresh list from the tracker: the gone are gone). */
  replace (fileId: string, peers: PeerAddress[]): void {
    this.rows.delete(fileId)
    for (const p of peers.slice(-MAX_CLUSTER_PEERS)) this.add(fileId, p)
  }

  remove (fileId: string, nodeId: string): void {
    const row = this.rows.get(fileId)
    row?.delete(nodeId)
    if (row?.size === 0) this.rows.delete(fileId)
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
}
