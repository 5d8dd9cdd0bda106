import { ID_IN_USE, MAX_FILES_PER_NODE_ITEM, type FileMetaData, type NodeInfo } from '../protocol/messages'
import { MAX_FILE_SIZE, MAX_TRACKER_FILES, MAX_TRACKER_FILES_PER_NODE, MAX_TRACKER_NODES, UNHELD_ENTRY_STANDS_MS } from '../limits'
import { fileMeta } from '../protocol/segmentation'

/** A node as a request names it: its id, the address it came from, the port it serves on, and the UDP port it came from (`via`). */
export interface NodeRef { nodeId: string, host: string, port: number, via?: number }

interface NodeState {
  nodeId: string
  host: string
  port: number
  /** The UDP port its requests come from (its one socket): requests for it from another are refused. */
  via?: number
  lastSeen: number
  /** fileId → pieces held */
  files: Map<string, number>
  uploaded: number
  downloaded: number
}

/** What a node says of a file when it publishes it. */
export interface PublishedFile {
  name: string
  hash: string
  size: number
  blockSize?: number
  root?: string
  /** Pieces held; absent: all of them. */
  have?: number
}

/** Where file metadata lives: in memory here; persistent stores implement the same interface. */
export interface FileStore {
  get: (fileId: string) => FileMetaData | undefined
  put: (meta: FileMetaData) => void
  /** Files with id > `after`, in id order, at most `limit`. */
  list: (after: string | undefined, limit: number) => FileMetaData[]
  /** Forget a file (a full registry makes room: see `Registry.publish`). */
  delete: (fileId: string) => void
  readonly size: number
  close?: () => void
}

/** Files kept sorted by id so pages are stable while files come and go. */
export class MemoryFileStore implements FileStore {
  private readonly byId = new Map<string, FileMetaData>()
  private sorted: string[] = []

  get size (): number { return this.byId.size }
  get (fileId: string): FileMetaData | undefined { return this.byId.get(fileId) }

  put (meta: FileMetaData): void {
    if (!this.byId.has(meta.hash)) this.sorted.splice(lowerBound(this.sorted, meta.hash), 0, meta.hash)
    this.byId.set(meta.hash, meta)
  }

  list (after: string | undefined, limit: number): FileMetaData[] {
    const start = after === undefined ? 0 : upperBound(this.sorted, after)
    return this.sorted.slice(start, start + limit).map((id) => this.byId.get(id) as FileMetaData)
  }

  delete (fileId: string): void {
    if (!this.byId.delete(fileId)) return
    this.sorted.splice(lowerBound(this.sorted, fileId), 1)
  }
}

export class RegistryFullError extends Error {
  readonly code = 'FULL'
}

/** A live node id claimed from another address: refused (ids are public); the node it names picks another id. */
export class NodeIdInUseError extends RangeError {
  readonly code = ID_IN_USE
}

/**
 * The tracker's state: published files (durable) and nodes (soft state rebuilt by heartbeats).
 * Pure: time is passed in by the caller, so flows drive it from their scheduler.
 */
export class Registry {
  private readonly nodes = new Map<string, NodeState>()
  /**
   * Live node ids in id order, for pages of `listNodes` without a sort per request. Kept lazily:
   * joins wait in `joined` and drops only mark it stale, and the next listing merges them in O(n)
   * (a splice per join or drop cost seconds of CPU when 100,000 nodes came back or expired at once).
   */
  private sortedNodes: string[] = []
  private joined: string[] = []
  private dropped = false
  private readonly holders = new Map<string, IndexedSet>()
  /** Per file, the sharer whose name it is listed under (see `publish`): not kept across restarts. */
  private readonly namedBy = new Map<string, string>()
  /**
   * Files no live node holds, the longest unheld first: a full registry forgets the first to make
   * room, so junk published once (or files nobody shares any more) cannot fill it for good.
   */
  private readonly unheld = new Map<string, true>()
  /**
   * When files lost their last holder (or the tracker restarted): for UNHELD_ENTRY_STANDS_MS from
   * then, an entry stands against claims that contradict it, whoever holds it meanwhile (see
   * `publish`). Kept until a claim finds it over, or the file is forgotten.
   */
  private readonly orphanedAt = new Map<string, number>()
  /**
   * Per file, the complete holders that published another root than the entry's: they do not back
   * the entry's root. (Counted as backers, two honest sharers of a file whose junk root
   * a squatter published first kept it in place for each other once the squatter was gone.) Only
   * files with such holders have an entry; bounded by the holders.
   */
  private readonly dissent = new Map<string, Set<string>>()
  /**
   * Per host, the files its live nodes hold (fileId → how many of its nodes hold it): a full
   * registry takes a new file from a host holding fewer by forgetting one of the biggest host's
   * (see `fairVictim`). Node ids are free, so a per-node cap alone let one host with a few ids
   * fill the registry, and every honest new file was refused for as long as it stayed up.
   */
  private readonly byHost = new Map<string, Map<string, number>>()
  /** The holders of each file, by host (see `sampleNodes`). */
  private readonly holderHosts = new Map<string, HostBuckets>()

  /**
   * @param random for `sampleNodes` (seeded in simulations)
   * @param maxFiles most files kept: beyond, the longest unheld is forgotten, and with none unheld the publish is refused (FULL)
   * @param startedAt now, on the clock later calls pass: the entries the store kept have been unheld since
   * @param standsMs how long an unheld entry stands against claims that contradict it
   */
  constructor (readonly files: FileStore = new MemoryFileStore(), private readonly ttlMs: number, private readonly random: () => number = Math.random, private readonly maxFiles = MAX_TRACKER_FILES, startedAt = 0, private readonly standsMs = UNHELD_ENTRY_STANDS_MS) {
    // a registry kept across a restart: nobody holds anything until the nodes publish again
    for (let page = files.list(undefined, 1000); page.length > 0; page = files.list(page[page.length - 1].hash, 1000)) {
      for (const m of page) { this.unheld.set(m.hash, true); this.orphanedAt.set(m.hash, startedAt) }
    }
  }

  get nodeCount (): number { return this.nodes.size }

  /**
   * A node (at the source address the tracker saw) promotes itself as seeder of a file, or as a
   * partial holder. The first publish fixes the segmentation (piece hashes depend on it): by
   * size, and by the live nodes the file may spread to. The root over the piece hashes is taken
   * from the first complete holder that hashed with that segmentation; the name from the latest
   * sharer to publish it (a finished download says `have`: all pieces, and renames nothing).
   */
  publish (node: NodeRef, file: PublishedFile, now: number): FileMetaData {
    if (file.size > MAX_FILE_SIZE) throw new RangeError(`size ${file.size} is more than the ${MAX_FILE_SIZE} bytes a file may have`)
    const known = this.admit(node) // (before anything changes: a refused publish changes nothing)
    if (known !== undefined && !known.files.has(file.hash) && known.files.size >= MAX_TRACKER_FILES_PER_NODE) {
      throw new RegistryFullError(`a node may hold at most ${MAX_TRACKER_FILES_PER_NODE} files at this tracker`)
    }
    let meta = this.files.get(file.hash)
    // The tracker cannot check a file's size, root or name: what it has stands while some other
    // live node backs it (any holder backs the size, which every holder's publish matched; a
    // complete holder, which checked it, the root), and for UNHELD_ENTRY_STANDS_MS after its last
    // holder went (or the tracker restarted), which gives them time to come back. A node that
    // published a wrong size or a junk root for a known hash (ids of public files are public)
    // blocked or broke that file for good before, also across restarts with --data; now, with no
    // backer left for that long, the next claim replaces it.
    const backed = (complete: boolean): boolean => {
      const orphaned = this.orphanedAt.get(file.hash)
      if (orphaned !== undefined) {
        if (now - orphaned < this.standsMs) return true
        this.orphanedAt.delete(file.hash)
      }
      const dissenters = complete ? this.dissent.get(file.hash) : undefined
      for (const id of this.holders.get(file.hash) ?? []) {
        if (id === node.nodeId || dissenters?.has(id) === true) continue
        const have = this.nodes.get(id)?.files.get(file.hash)
        if (have !== undefined && (!complete || have === meta?.pieces)) return true
      }
      return false
    }
    const complete = meta !== undefined && (file.have ?? meta.pieces) === meta.pieces
    let replace = false
    if (meta !== undefined && meta.size !== file.size) {
      // same hash, other size: impossible for honest nodes
      if (backed(false)) throw new RangeError(`size ${file.size} does not match the size ${meta.size} live nodes hold`)
      replace = true
    } else if (complete && meta !== undefined && meta.root !== undefined && file.root !== undefined && file.root !== meta.root && file.blockSize === meta.blockSize && !backed(true)) {
      replace = true
    }
    const stands = (by: string | undefined): boolean => by !== undefined && by !== node.nodeId && this.nodes.has(by)
    if (meta === undefined || replace) {
      // (a replaced entry leaves room for its successor: the registry is only full for a new one)
      const full = !replace && this.files.size >= this.maxFiles
      const victim = full ? this.oldestUnheld(now) ?? this.fairVictim(node.host) : undefined
      if (full && victim === undefined) throw new RegistryFullError('tracker holds too many files')
      const fresh = fileMeta(file.name, file.hash, file.size, Math.max(1, this.nodes.size))
      if (file.root !== undefined && file.blockSize === fresh.blockSize && (file.have ?? fresh.pieces) === fresh.pieces) fresh.root = file.root
      // a refused publish changes nothing
      if (file.have !== undefined && file.have > fresh.pieces) throw new RangeError(`have ${file.have} is more than the ${fresh.pieces} pieces`)
      if (replace) {
        // the entry's backers are gone: this publish makes the entry anew (its holders held the old one)
        this.forget(file.hash)
      } else if (victim !== undefined) this.forget(victim)
      meta = fresh
      this.files.put(meta)
      if (file.have === undefined) this.namedBy.set(meta.hash, node.nodeId)
    } else if ((file.have ?? meta.pieces) === meta.pieces) {
      // a complete holder may bring the root; a sharer (no `have`: a file of its share, not a
      // download) also the name: the file is listed under the name it is shared by now (one
      // renamed on disk is fetched by its new name; a download only repeats the name it was given),
      // unless another live sharer named it
      const root = meta.root === undefined && file.root !== undefined && file.blockSize === meta.blockSize ? file.root : meta.root
      // (a sharer repeating the name of a live namer's does not become the namer: it could then
      // rename the file under it, and publish its own bytes under the name)
      const names = file.have === undefined && !stands(this.namedBy.get(meta.hash))
      const name = names ? file.name : meta.name
      if (names) this.namedBy.set(meta.hash, node.nodeId)
      if (root !== meta.root || name !== meta.name) {
        meta = { ...meta, name, root }
        this.files.put(meta)
      }
    }
    if (file.have !== undefined && file.have > meta.pieces) throw new RangeError(`have ${file.have} is more than the ${meta.pieces} pieces`)
    const n = this.touch(node, now)
    this.hold(n, meta.hash, file.have ?? meta.pieces)
    if ((file.have ?? meta.pieces) === meta.pieces && file.root !== undefined && file.blockSize === meta.blockSize) this.dissents(n.nodeId, meta.hash, file.root !== meta.root)
    return meta
  }

  /** Complete holder `nodeId` published another root for `fileId` than the entry's (false: it agrees, or holds it no longer). */
  private dissents (nodeId: string, fileId: string, disagrees: boolean): void {
    let d = this.dissent.get(fileId)
    if (!disagrees) {
      if (d?.delete(nodeId) === true && d.size === 0) this.dissent.delete(fileId)
      return
    }
    if (d === undefined) { d = new Set(); this.dissent.set(fileId, d) }
    d.add(nodeId)
  }

  /** `n` holds `have` pieces of `fileId`. */
  private hold (n: NodeState, fileId: string, have: number): void {
    if (!n.files.has(fileId)) {
      let mine = this.byHost.get(n.host)
      if (mine === undefined) { mine = new Map(); this.byHost.set(n.host, mine) }
      mine.set(fileId, (mine.get(fileId) ?? 0) + 1)
    }
    n.files.set(fileId, have)
    let h = this.holders.get(fileId)
    if (h === undefined) { h = new IndexedSet(); this.holders.set(fileId, h); this.unheld.delete(fileId) }
    if (h.has(n.nodeId)) return
    h.add(n.nodeId)
    let hosts = this.holderHosts.get(fileId)
    if (hosts === undefined) { hosts = new HostBuckets(); this.holderHosts.set(fileId, hosts) }
    hosts.add(n.host, n.nodeId)
  }

  /** `n` no longer holds `fileId` (its count by host too; the file's holders are the caller's: see `stopHolding`, `forgetHolders`). */
  private release (n: NodeState, fileId: string): void {
    if (!n.files.delete(fileId)) return
    const mine = this.byHost.get(n.host) as Map<string, number>
    const left = (mine.get(fileId) as number) - 1
    if (left > 0) mine.set(fileId, left)
    else if (mine.delete(fileId) && mine.size === 0) this.byHost.delete(n.host)
  }

  /** `n` no longer holds `fileId`, nor is it one of its holders (a file left with none is unheld from `now`). */
  private stopHolding (n: NodeState, fileId: string, now: number): void {
    this.release(n, fileId)
    const h = this.holders.get(fileId)
    if (h?.delete(n.nodeId) === true) this.holderHosts.get(fileId)?.delete(n.host, n.nodeId)
    this.dissents(n.nodeId, fileId, false)
    if (h?.size === 0) this.unhold(fileId, now)
  }

  /** Every node stops holding `fileId` (its entry is made anew). */
  private forgetHolders (fileId: string): void {
    for (const id of this.holders.get(fileId) ?? []) {
      const n = this.nodes.get(id)
      if (n !== undefined) this.release(n, fileId)
    }
    this.holders.delete(fileId)
    this.holderHosts.delete(fileId)
    this.unheld.delete(fileId)
    this.dissent.delete(fileId)
  }

  /** Forget a file and who holds it (a full registry makes room). */
  private forget (fileId: string): void {
    this.forgetHolders(fileId)
    this.files.delete(fileId)
    this.namedBy.delete(fileId)
    this.orphanedAt.delete(fileId)
  }

  /**
   * A full registry in which every file is held, asked for a new file by `host`: a file to forget
   * for it, if fairness allows. The host holding the most files gives one up, if it holds at least
   * two more than `host` (so `host` never ends up holding more than it did), and only one that
   * no host holds except such big ones (a file a smaller host also holds stays). A host filling the
   * registry under many node ids is thereby pushed back to the others' level, one new file at a
   * time, and honest publishes go through. Bounded work: a full registry's publishes look at a few
   * thousand files at most.
   */
  private fairVictim (host: string): string | undefined {
    const mine = this.byHost.get(host)?.size ?? 0
    let big: Map<string, number> | undefined
    let bigHost = ''
    for (const [h, files] of this.byHost) {
      if (h !== host && files.size > mine + 1 && (big === undefined || files.size > big.size)) { big = files; bigHost = h }
    }
    if (big === undefined) return undefined
    // (bounded in files looked at and in holders checked in all: files each shared with a small
    // host, listed last of 64 holders, cost 6 ms a refused publish before the second bound)
    let looked = 0
    let checked = 0
    for (const [fileId, count] of big) {
      if (++looked > VICTIM_SCAN || checked > VICTIM_SCAN) break
      const holders = this.holders.get(fileId)
      if (holders === undefined) continue
      if (holders.size === count) return fileId // (only bigHost's nodes hold it: the usual case)
      if (holders.size > VICTIM_MAX_HOLDERS) continue // (a file many hold is nobody's junk)
      let ok = true
      for (const id of holders) {
        checked++
        const h = (this.nodes.get(id) as NodeState).host
        if (h !== bigHost && (h === host || (this.byHost.get(h)?.size ?? 0) <= mine + 1)) { ok = false; break }
      }
      if (ok) return fileId
    }
    return undefined
  }

  /**
   * The file no live node has held for the longest, to make room, unless it still stands (see
   * `publish`): forgetting it made room for a squatter to publish it anew, with a junk size, in the
   * minute after a restart. (`unheld` is in the order files lost their last holder, so the first
   * is the one unheld the longest: if it still stands, all do.)
   */
  private oldestUnheld (now: number): string | undefined {
    for (const fileId of this.unheld.keys()) return now - (this.orphanedAt.get(fileId) ?? -Infinity) < this.standsMs ? undefined : fileId
    return undefined
  }

  /** A file lost its last live holder, at `now`. */
  private unhold (fileId: string, now: number): void {
    this.holders.delete(fileId)
    this.holderHosts.delete(fileId)
    if (this.files.get(fileId) === undefined) return
    this.unheld.set(fileId, true)
    this.orphanedAt.set(fileId, now)
  }

  /**
   * Heartbeat, with the node's counters. Returns true when the node should re-publish: the
   * tracker holds fewer of its files than it says (it restarted, or expired the node). More is
   * no reason: publishes on their way, withdraws the node retries until they are acknowledged;
   * a re-publish would only send every file again (a peer adding thousands of files did so
   * with each heartbeat while they went out).
   */
  announce (node: NodeRef, fileCount: number, now: number, counters: { uploaded: number, downloaded: number } = { uploaded: 0, downloaded: 0 }): boolean {
    const n = this.touch(node, now)
    n.uploaded = counters.uploaded
    n.downloaded = counters.downloaded
    return n.files.size < fileCount
  }

  private touch (node: NodeRef, now: number): NodeState {
    let n = this.admit(node)
    if (n === undefined) {
      n = { ...node, lastSeen: now, files: new Map(), uploaded: 0, downloaded: 0 }
      this.nodes.set(node.nodeId, n)
      this.joined.push(n.nodeId)
    }
    n.lastSeen = now
    return n
  }

  /**
   * May this request speak for `node`? Its live entry (undefined: a new node there is room for).
   * A live node's id must come from the host it was seen at, and from the UDP port it spoke from
   * (node ids are public: anyone may list them): another is refused until the id expires (a node
   * whose address changed is listed again a TTL later; a node told its id is in use takes a new
   * one); another serving port from the same socket is the node, moved. (Any process of the
   * node's host could move it to port 1, withdraw its files and make it leave before: gets failed.)
   */
  private admit (node: NodeRef): NodeState | undefined {
    const n = this.nodes.get(node.nodeId)
    if (n === undefined) {
      if (this.nodes.size >= MAX_TRACKER_NODES) throw new RegistryFullError('tracker holds too many nodes')
      return undefined
    }
    if (n.host !== node.host || !sameVia(n, node)) throw new NodeIdInUseError(`node id ${n.nodeId.slice(0, 16)} is in use from another address`)
    n.port = node.port
    n.via ??= node.via
    return n
  }

  /** A node no longer holds a file (a node the tracker does not know holds nothing: nothing changes). */
  withdraw (node: NodeRef, fileId: string, now: number): void {
    if (!this.nodes.has(node.nodeId)) return
    this.stopHolding(this.touch(node, now), fileId, now)
  }

  /** A node closing: it is forgotten at once, if the request comes from where it was last seen (another address claiming its id changes nothing). */
  leave (node: NodeRef, now: number): void {
    const n = this.nodes.get(node.nodeId)
    if (n !== undefined && n.host === node.host && n.port === node.port && sameVia(n, node)) this.drop(n, now)
  }

  /** Drop nodes silent for longer than the TTL. Returns how many went. */
  expire (now: number): number {
    let gone = 0
    for (const n of this.nodes.values()) {
      if (now - n.lastSeen <= this.ttlMs) continue
      this.drop(n, now)
      gone++
    }
    // joins wait for the next full listing (status, the dashboard), which may not come for a long
    // time: ids that came and went would pile up there for good (a million: 58 MB)
    if (this.joined.length > 2 * this.nodes.size + 1024) this.joined = this.joined.filter((id) => this.nodes.has(id))
    return gone
  }

  private drop (n: NodeState, now: number): void {
    this.nodes.delete(n.nodeId)
    this.dropped = true
    for (const f of n.files.keys()) this.stopHolding(n, f, now) // (deleting the entry being visited is safe in a Map)
  }

  /** Live nodes in id order, after `after`, optionally only those holding `fileId`. */
  listNodes (fileId: string | undefined, after: string | undefined, limit: number): NodeInfo[] {
    const ids = fileId === undefined ? this.sortedIds() : [...(this.holders.get(fileId) ?? [])].sort()
    const start = after === undefined ? 0 : upperBound(ids, after)
    return ids.slice(start, start + limit).map((id) => this.info(id))
  }

  /** `sortedNodes` brought up to date: the live nodes (the truth is `nodes`), in id order. */
  private sortedIds (): string[] {
    if (this.joined.length === 0 && !this.dropped) return this.sortedNodes
    const live = (id: string): boolean => this.nodes.has(id)
    const base = this.dropped ? this.sortedNodes.filter(live) : this.sortedNodes
    const add = this.joined.filter(live).sort()
    const out: string[] = []
    let i = 0; let j = 0
    while (i < base.length || j < add.length) {
      const next = j >= add.length || (i < base.length && base[i] <= add[j]) ? base[i++] : add[j++]
      if (out.length === 0 || out[out.length - 1] !== next) out.push(next) // (dropped and back: in both)
    }
    this.sortedNodes = out
    this.joined = []
    this.dropped = false
    return out
  }

  /**
   * Up to `k` holders of `fileId` drawn at random, in O(k): leechers of a big swarm each get their
   * own neighbours instead of all asking the same first page (which also cost a sort per query).
   * Spread over hosts: when some host holds it under several node ids, the hosts are drawn first
   * and take turns (one holder each, then a second, …), so a host that registers hundreds of ids
   * that do not answer fills no sample with them: every other host is in it (600 such ids
   * beside one seeder made 16-holder samples miss the seeder, and gets fail).
   */
  sampleNodes (fileId: string, k: number): NodeInfo[] {
    const h = this.holders.get(fileId)
    if (h === undefined) return []
    // (no more than a reply can carry: a sample of 1,024 built 1,024 entries to send about 100)
    const want = Math.min(k, MAX_SAMPLE)
    const hosts = this.holderHosts.get(fileId)
    const ids = hosts === undefined || hosts.hostCount === h.size ? h.sample(want, this.random) : hosts.sample(want, this.random)
    return ids.map((id) => this.info(id))
  }

  private info (id: string): NodeInfo {
    const n = this.nodes.get(id) as NodeState
    // (the first few, without copying every file the node holds: thousands, for each node listed)
    const files: NodeInfo['files'] = []
    for (const [fileId, have] of n.files) {
      if (files.length >= MAX_FILES_PER_NODE_ITEM) break
      files.push({ fileId, have, pieces: this.files.get(fileId)?.pieces ?? have })
    }
    return { nodeId: n.nodeId, host: n.host, port: n.port, lastSeen: n.lastSeen, files, fileCount: n.files.size, uploaded: n.uploaded, downloaded: n.downloaded }
  }

  // ---- read-only views for the dashboard and metrics ----

  /** Live nodes holding a file. */
  holderCount (fileId: string): number { return this.holders.get(fileId)?.size ?? 0 }

  /** Files with at least one live holder, most held first, at most `limit`. */
  heldFiles (limit: number): { fileId: string, holders: number }[] {
    // the top `limit` kept in order as the files go by (a dashboard tick sorted every held file:
    // 100,000 of them, each second, on the tracker's event loop)
    const top: { fileId: string, holders: number }[] = []
    const before = (a: { fileId: string, holders: number }, b: { fileId: string, holders: number }): boolean => a.holders > b.holders || (a.holders === b.holders && a.fileId < b.fileId)
    if (limit <= 0) return top
    for (const [fileId, h] of this.holders) {
      const it = { fileId, holders: h.size }
      if (top.length === limit && !before(it, top[limit - 1])) continue
      let lo = 0; let hi = top.length
      while (lo < hi) { const mid = (lo + hi) >> 1; if (before(top[mid], it)) lo = mid + 1; else hi = mid }
      top.splice(lo, 0, it)
      if (top.length > limit) top.pop()
    }
    return top
  }

  /** Sum of the counters the live nodes last reported. */
  counterTotals (): { uploaded: number, downloaded: number } {
    let uploaded = 0; let downloaded = 0
    for (const n of this.nodes.values()) { uploaded += n.uploaded; downloaded += n.downloaded }
    return { uploaded, downloaded }
  }
}

/** Files of the biggest host a full registry looks at for one to forget, and holders it checks in all (see `fairVictim`). */
const VICTIM_SCAN = 4096
/** A file held by more nodes than this is not forgotten to make room. */
const VICTIM_MAX_HOLDERS = 64

/** Most holders a sample draws: about what one reply holds of the smallest entries (see flow.ts's page). */
const MAX_SAMPLE = 160

/** A set of ids that can also be sampled at random in O(k) (array + index, swap-remove). */
export class IndexedSet implements Iterable<string> {
  private readonly ids: string[] = []
  private readonly at = new Map<string, number>()
  get size (): number { return this.ids.length }
  has (id: string): boolean { return this.at.has(id) }
  add (id: string): void {
    if (this.at.has(id)) return
    this.at.set(id, this.ids.length)
    this.ids.push(id)
  }

  delete (id: string): boolean {
    const i = this.at.get(id)
    if (i === undefined) return false
    const last = this.ids.pop() as string
    if (last !== id) { this.ids[i] = last; this.at.set(last, i) }
    this.at.delete(id)
    return true
  }

  [Symbol.iterator] (): Iterator<string> { return this.ids[Symbol.iterator]() }

  /** Up to k distinct ids, uniformly at random (a partial Fisher–Yates over a copy of the indexes drawn). */
  sample (k: number, random: () => number): string[] {
    const n = this.ids.length
    if (k >= n) return [...this.ids]
    const picked = new Map<number, number>() // sparse swaps: position → index now there
    const out: string[] = []
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(random() * (n - i))
      const vj = picked.get(j) ?? j
      picked.set(j, picked.get(i) ?? i)
      out.push(this.ids[vj])
    }
    return out
  }

}

/** Do a node and a request for it come from the same UDP port (either not saying: yes)? */
function sameVia (n: { via?: number }, node: { via?: number }): boolean {
  return n.via === undefined || node.via === undefined || n.via === node.via
}

/** Ids by host, for samples spread over hosts: the hosts drawn at random, each giving one id a turn. */
class HostBuckets {
  private readonly hosts = new IndexedSet()
  private readonly ids = new Map<string, IndexedSet>()
  get hostCount (): number { return this.hosts.size }
  add (host: string, id: string): void {
    let s = this.ids.get(host)
    if (s === undefined) { s = new IndexedSet(); this.ids.set(host, s); this.hosts.add(host) }
    s.add(id)
  }

  delete (host: string, id: string): void {
    const s = this.ids.get(host)
    if (s === undefined || !s.delete(id) || s.size > 0) return
    this.ids.delete(host)
    this.hosts.delete(host)
  }

  /**
   * Up to k ids: up to k hosts drawn at random, then one id of each in turn (each host's drawn at
   * random), until k. O(k) draws: each host gives its share of k, and only when some hold fewer do
   * the others give up to k (drawing k of every host was k², 2.6 ms a sample of 160).
   */
  sample (k: number, random: () => number): string[] {
    const hosts = this.hosts.sample(k, random)
    const share = Math.ceil(k / Math.max(1, hosts.length))
    let drawn = hosts.map((h) => (this.ids.get(h) as IndexedSet).sample(share, random))
    if (drawn.reduce((n, d) => n + d.length, 0) < k) drawn = drawn.map((d, i) => d.length < share ? d : (this.ids.get(hosts[i]) as IndexedSet).sample(k, random))
    const out: string[] = []
    for (let turn = 0; out.length < k; turn++) {
      const before = out.length
      for (const d of drawn) if (turn < d.length && out.length < k) out.push(d[turn])
      if (out.length === before) break
    }
    return out
  }
}

function lowerBound (a: string[], x: string): number {
  let lo = 0; let hi = a.length
  while (lo < hi) { const m = (lo + hi) >> 1; if (a[m] < x) lo = m + 1; else hi = m }
  return lo
}

function upperBound (a: string[], x: string): number {
  let lo = 0; let hi = a.length
  while (lo < hi) { const m = (lo + hi) >> 1; if (a[m] <= x) lo = m + 1; else hi = m }
  return lo
}
