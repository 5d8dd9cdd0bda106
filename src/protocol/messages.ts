import { ProtocolError } from '../errors'
import { MAX_BITFIELD_BYTES, MAX_BLOCK_SIZE, MAX_FILE_SIZE, MAX_PIECES, MAX_BUSY_RETRY_MS, MAX_PEERS_PER_REPLY, MAX_WATCH_MS, PAGE_SIZE } from '../limits'
import * as v from './validate'

/**
 * Every message of the tracker wire (UDP) and the peer wire (TCP) as one discriminated union on
 * `type`. The structs of the original design keep their names and fields: FileMetaData,
 * FileRequest (the `leech` message) and PieceHeader (the `piece` message, payload appended raw).
 */

/** What the tracker knows of a file. fileId === hash (hex SHA-256 of the content). */
export interface FileMetaData {
  name: string
  hash: string
  size: number
  blockSize: number
  pieces: number
  /** SHA-256 over the concatenated piece hashes, once a seeder has reported it. */
  root?: string
}

/** A node's share of one file, as the tracker reports it. */
export interface NodeFile {
  fileId: string
  /** Pieces the node holds (= the file's pieces when it is a seeder). */
  have: number
  pieces: number
}

/** Where a node listens for peers. `host` is the source address the tracker saw, never a claim. */
export interface PeerAddress {
  nodeId: string
  host: string
  port: number
}

/**
 * How peers are told apart (a download's sources and bans, a node's links, cluster table rows):
 * node id and address together. Ids are claims: a neighbour could name an honest node's id at its
 * own address, and by id alone that address became the honest node.
 */
export const peerKey = (p: PeerAddress): string => `${p.nodeId}@${p.host}:${p.port}`

/** A node as the tracker reports it. */
export interface NodeInfo extends PeerAddress {
  lastSeen: number
  /** The files it holds (the first MAX_FILES_PER_NODE_ITEM of them), with completeness. */
  files: NodeFile[]
  fileCount: number
  /** Bytes of pieces it has sent and received, as it last reported. */
  uploaded: number
  downloaded: number
}

export const MAX_FILES_PER_NODE_ITEM = 32
/** Most piece hashes in one `hashes` frame (2 MiB of payload). */
export const MAX_HASHES_PER_FRAME = 65536
export const MAX_LIST_ITEMS = 1024

// ---------------------------------------------------------------- tracker wire (UDP)
/** A node promotes itself as seeder of a file; the tracker answers with the segmentation it chose. */
/**
 * A node promotes itself as seeder of a file (or, with `have` < pieces, as a partial holder).
 * `blockSize` and `root` are the segmentation it hashed the pieces with and the root over those
 * piece hashes: the tracker keeps the first root that matches its own segmentation.
 */
export interface Publish { type: 'publish', tx: number, nodeId: string, port: number, name: string, hash: string, size: number, blockSize?: number, root?: string, have?: number, token?: Uint8Array }
export interface Published { type: 'published', tx: number, meta: FileMetaData }
/** Heartbeat. `files` is how many files the node holds: when the tracker holds fewer for it, it asks for a resync (re-publish). */
export interface Announce { type: 'announce', tx: number, nodeId: string, port: number, files: number, uploaded: number, downloaded: number, token?: Uint8Array }
export interface Announced { type: 'announced', tx: number, interval: number, resync: boolean }
export interface QueryFiles { type: 'query_files', tx: number, after?: string, token?: Uint8Array }
/** A file as the tracker lists it: its metadata and how many live nodes hold it (none: an old version nobody shares any more). */
export interface ListedFile extends FileMetaData { holders?: number }
export interface Files { type: 'files', tx: number, files: ListedFile[], next?: string }
/** Node list, optionally only nodes holding `fileId`; paginated by nodeId. */
/**
 * Live nodes (holding `fileId`, when given), a page at a time in id order; or, with `sample`, up
 * to that many holders drawn at random (one reply, no paging): how a leecher finds neighbours
 * without every leecher of a big swarm landing on the same first page.
 */
export interface GetNodes { type: 'get_nodes', tx: number, fileId?: string, after?: string, sample?: number, token?: Uint8Array }
export interface Nodes { type: 'nodes', tx: number, nodes: NodeInfo[], next?: string }
export interface TrackerErrorReply { type: 'error', tx: number, code: string, message: string }
/** The error code of a request for a live node id from another address than the node's (it should take a new id). */
export const ID_IN_USE = 'ID_IN_USE'
/** A node no longer holds a file (it changed or vanished on disk). */
export interface Withdraw { type: 'withdraw', tx: number, nodeId: string, port: number, fileId: string, token?: Uint8Array }
export interface Withdrawn { type: 'withdrawn', tx: number }
/** A node closing: it holds nothing any more (sooner than its records would expire). Honoured only from the address the node was last seen at. */
export interface Leave { type: 'leave', tx: number, nodeId: string, port: number, token?: Uint8Array }
export interface Left { type: 'left', tx: number }
/**
 * The handshake that proves a source address (as UDP trackers do): the tracker answers with a
 * token bound to the address it saw and the time, which every other request must carry. `pad`
 * makes the request at least as big as the reply, so a spoofed source gains nothing.
 */
export interface Connect { type: 'connect', tx: number, pad: Uint8Array }
export interface Connected { type: 'connected', tx: number, token: Uint8Array }

export const TOKEN_BYTES = 16
export const CONNECT_PAD_BYTES = 32

export type TrackerRequest = Publish | Announce | QueryFiles | GetNodes | Withdraw | Leave | Connect
export type TrackerReply = Published | Announced | Files | Nodes | Withdrawn | Left | Connected | TrackerErrorReply
export type TrackerMessage = TrackerRequest | TrackerReply

// ---------------------------------------------------------------- peer wire (TCP)
/** Ask a neighbour for the peers it knows for a file (its cluster table row). */
export interface FindCluster { type: 'find_cluster', req: number, fileId: string, from?: { nodeId: string, port: number } }
export interface Cluster { type: 'cluster', req: number, fileId: string, peers: PeerAddress[] }
/** Ask for the piece hashes [from, from+count) of a file; they come as the raw payload (32 bytes each). */
export interface GetHashes { type: 'get_hashes', req: number, fileId: string, from: number, count: number }
export interface Hashes { type: 'hashes', req: number, fileId: string, from: number, count: number }
/**
 * Ask which pieces a peer holds. A watch (`since` given): the peer answers once it has stored a
 * piece the asker `lacks` (bit i: piece i) after the `version` it last reported, or after `waitMs`
 * with no such news; a complete holder answers at once. Pieces then spread as fast as news of
 * them can travel, without polling. `needHashes` (a watch): the asker has no verified hash list
 * yet: the peer also answers as soon as it holds one (the list spreads from peer to peer, not
 * from the seeder to everyone). `from`: the asker serves this file too (it is downloading it): the
 * peer may fetch from it in turn.
 */
export interface Probe { type: 'probe', req: number, fileId: string, since?: number, lacks?: Uint8Array, waitMs?: number, needHashes?: boolean, from?: { nodeId: string, port: number } }
/**
 * `bitfield` absent means the peer holds every piece. Bit i (MSB first) is piece i. `pending`:
 * pieces a leecher is fetching right now, so others treat them as soon-available rather than
 * fetch the same ones from a seeder. `sent`: pieces a seeder has already sent once, while some
 * never went out: it declines them for now, so leechers ask it for the others. `version`: how
 * many pieces a peer still downloading has stored (the `since` of its askers' next watch).
 * `hashes`: a peer still downloading holds the verified hash list (it may give it before it holds
 * a piece).
 */
export interface Have { type: 'have', req: number, fileId: string, totalPieces: number, bitfield?: Uint8Array, pending?: Uint8Array, sent?: Uint8Array, version?: number, hashes?: boolean }
/**
 * FileRequest: one piece, at `offset` (a multiple of blockSize) of the file `hash`. `copies`
 * (optional): how many of the asker's sources hold this piece; a holder sends the rarest queued
 * piece first (see RAREST_FIRST_COPIES), and a seeder gives a piece it already sent again, after
 * SEEDED_LOCK_MS, to an asker that says 1 (only the seeder) or 0. `starved` (optional): the asker's pieces have been
 * coming far slower than its own average (STARVED_SHARE); a busy holder lets it through a longer
 * queue, so it is not the one left behind while others are served.
 */
export interface Leech { type: 'leech', req: number, hash: string, size: number, offset: number, blockSize: number, pieces: number, copies?: number, starved?: boolean }
/**
 * PieceHeader: `pieceSize` raw bytes follow the header in the same frame. clusterName is the fileId.
 * `bitfield` (optional): the pieces a sender that is still downloading holds now, so an asker
 * learns its new pieces with every piece, without waiting for its next probe.
 */
export interface Piece { type: 'piece', req: number, pieceSize: number, offset: number, totalPieces: number, clusterName: string, bitfield?: Uint8Array }
/** `retryMs` (with BUSY): ask this peer again no sooner than this (see BUSY_RETRY_PIECES). */
export interface PeerErrorReply { type: 'error', req: number, code: string, message: string, retryMs?: number }

export type PeerRequest = FindCluster | GetHashes | Probe | Leech
export type PeerReply = Cluster | Hashes | Have | Piece | PeerErrorReply
export type PeerMessage = PeerRequest | PeerReply

/** Error codes carried in `error` replies. */
export const REMOTE_CODES = {
  notFound: 'NOT_FOUND',
  badRequest: 'BAD_REQUEST',
  busy: 'BUSY',
  full: 'FULL',
  unavailable: 'UNAVAILABLE',
  /** A seeder already sent this piece to someone while others have not gone out once: fetch it from a peer. */
  seeded: 'SEEDED',
} as const

// ---------------------------------------------------------------- validation
const tx = (o: v.Obj): number => v.int(o, 'tx', 0, 0xffffffff)
const req = (o: v.Obj): number => v.int(o, 'req', 0, 0xffffffff)
const port = (o: v.Obj): number => v.int(o, 'port', 1, 65535)

export function fileMetaData (x: unknown): FileMetaData {
  const o = v.obj(x, 'file')
  const meta: FileMetaData = { name: v.name(o), hash: v.hash(o, 'hash'), size: v.int(o, 'size', 0, MAX_FILE_SIZE), blockSize: v.int(o, 'blockSize', PAGE_SIZE, MAX_BLOCK_SIZE), pieces: v.int(o, 'pieces', 0, MAX_PIECES) }
  checkSegmentation(meta.size, meta.blockSize, meta.pieces)
  const root = v.optHash(o, 'root')
  if (root !== undefined) meta.root = root
  return meta
}

function listedFile (x: unknown): ListedFile {
  const f: ListedFile = fileMetaData(x)
  const o = x as v.Obj
  if (o.holders !== undefined && o.holders !== null) f.holders = v.int(o, 'holders')
  return f
}

/** blockSize is a multiple of the page size and pieces = ceil(size / blockSize). */
export function checkSegmentation (size: number, blockSize: number, pieces: number): void {
  if (blockSize % PAGE_SIZE !== 0) throw new ProtocolError(`blockSize ${blockSize} is not a multiple of ${PAGE_SIZE}`)
  if (pieces !== Math.ceil(size / blockSize)) throw new ProtocolError(`pieces ${pieces} != ceil(${size} / ${blockSize})`)
}

function peerAddress (x: unknown): PeerAddress {
  const o = v.obj(x, 'peer')
  return { nodeId: v.nodeId(o), host: v.host(o), port: port(o) }
}

function nodeFile (x: unknown): NodeFile {
  const o = v.obj(x, 'file')
  const f = { fileId: v.hash(o, 'fileId'), have: v.int(o, 'have'), pieces: v.int(o, 'pieces', 0, MAX_PIECES) }
  if (f.have > f.pieces) throw new ProtocolError('have is more than pieces')
  return f
}

function nodeInfo (x: unknown): NodeInfo {
  const o = v.obj(x, 'node')
  return {
    ...peerAddress(o),
    lastSeen: v.int(o, 'lastSeen'),
    files: v.list(o, 'files', MAX_FILES_PER_NODE_ITEM, nodeFile),
    fileCount: v.int(o, 'fileCount'),
    uploaded: v.int(o, 'uploaded'),
    downloaded: v.int(o, 'downloaded'),
  }
}

function next (o: v.Obj): { next?: string } {
  const n = v.optStr(o, 'next', 64)
  return n === undefined ? {} : { next: n }
}

function token (o: v.Obj): { token?: Uint8Array } {
  if (o.token === undefined || o.token === null) return {}
  const t = v.bytes(o, 'token', TOKEN_BYTES)
  if (t.length !== TOKEN_BYTES) throw new ProtocolError('token has the wrong length')
  return { token: t }
}

/** Validate a decoded tracker datagram. Throws ProtocolError. */
export function trackerMessage (x: unknown): TrackerMessage {
  const o = v.obj(x)
  const m = trackerMessageWithoutToken(o)
  return m.type === 'publish' || m.type === 'announce' || m.type === 'query_files' || m.type === 'get_nodes' || m.type === 'withdraw' || m.type === 'leave' ? { ...m, ...token(o) } : m
}

function trackerMessageWithoutToken (o: v.Obj): TrackerMessage {
  switch (o.type) {
    case 'connect': {
      const pad = v.bytes(o, 'pad', 1024)
      if (pad.length < CONNECT_PAD_BYTES) throw new ProtocolError('connect request is not padded')
      return { type: 'connect', tx: tx(o), pad }
    }
    case 'connected': {
      const t = v.bytes(o, 'token', TOKEN_BYTES)
      if (t.length !== TOKEN_BYTES) throw new ProtocolError('token has the wrong length')
      return { type: 'connected', tx: tx(o), token: t }
    }
    case 'publish': {
      const m: Publish = { type: 'publish', tx: tx(o), nodeId: v.nodeId(o), port: port(o), name: v.name(o), hash: v.hash(o, 'hash'), size: v.int(o, 'size', 0, MAX_FILE_SIZE) }
      if (o.blockSize !== undefined) m.blockSize = v.int(o, 'blockSize', PAGE_SIZE, MAX_BLOCK_SIZE)
      const root = v.optHash(o, 'root'); if (root !== undefined) m.root = root
      if (o.have !== undefined) m.have = v.int(o, 'have')
      if (m.root !== undefined && m.blockSize === undefined) throw new ProtocolError('root without blockSize')
      return m
    }
    case 'published': return { type: 'published', tx: tx(o), meta: fileMetaData(o.meta) }
    case 'announce': return { type: 'announce', tx: tx(o), nodeId: v.nodeId(o), port: port(o), files: v.int(o, 'files'), uploaded: v.int(o, 'uploaded'), downloaded: v.int(o, 'downloaded') }
    case 'announced': return { type: 'announced', tx: tx(o), interval: v.int(o, 'interval', 1, 3_600_000), resync: v.bool(o, 'resync') }
    case 'query_files': {
      const after = v.optHash(o, 'after')
      return after === undefined ? { type: 'query_files', tx: tx(o) } : { type: 'query_files', tx: tx(o), after }
    }
    case 'files': return { type: 'files', tx: tx(o), files: v.list(o, 'files', MAX_LIST_ITEMS, listedFile), ...next(o) }
    case 'get_nodes': {
      const m: GetNodes = { type: 'get_nodes', tx: tx(o) }
      const fileId = v.optHash(o, 'fileId'); if (fileId !== undefined) m.fileId = fileId
      const after = v.optNodeId(o, 'after'); if (after !== undefined) m.after = after
      if (o.sample !== undefined) m.sample = v.int(o, 'sample', 1, MAX_LIST_ITEMS)
      return m
    }
    case 'nodes': return { type: 'nodes', tx: tx(o), nodes: v.list(o, 'nodes', MAX_LIST_ITEMS, nodeInfo), ...next(o) }
    case 'withdraw': return { type: 'withdraw', tx: tx(o), nodeId: v.nodeId(o), port: port(o), fileId: v.hash(o, 'fileId') }
    case 'withdrawn': return { type: 'withdrawn', tx: tx(o) }
    case 'leave': return { type: 'leave', tx: tx(o), nodeId: v.nodeId(o), port: port(o) }
    case 'left': return { type: 'left', tx: tx(o) }
    case 'error': return { type: 'error', tx: tx(o), code: v.str(o, 'code', 32), message: v.str(o, 'message', 512) }
    default: throw new ProtocolError(`unknown tracker message type ${typeName(o.type)}`)
  }
}

/** Validate a decoded peer frame header. Throws ProtocolError. */
export function peerMessage (x: unknown): PeerMessage {
  const o = v.obj(x)
  switch (o.type) {
    case 'find_cluster': {
      const m: FindCluster = { type: 'find_cluster', req: req(o), fileId: v.hash(o, 'fileId') }
      if (o.from !== undefined && o.from !== null) { const f = v.obj(o.from, 'from'); m.from = { nodeId: v.nodeId(f), port: port(f) } }
      return m
    }
    case 'get_hashes': return { type: 'get_hashes', req: req(o), fileId: v.hash(o, 'fileId'), from: v.int(o, 'from'), count: v.int(o, 'count', 1, MAX_HASHES_PER_FRAME) }
    case 'hashes': return { type: 'hashes', req: req(o), fileId: v.hash(o, 'fileId'), from: v.int(o, 'from'), count: v.int(o, 'count', 1, MAX_HASHES_PER_FRAME) }
    case 'cluster': return { type: 'cluster', req: req(o), fileId: v.hash(o, 'fileId'), peers: v.list(o, 'peers', MAX_PEERS_PER_REPLY, peerAddress) }
    case 'probe': {
      const m: Probe = { type: 'probe', req: req(o), fileId: v.hash(o, 'fileId') }
      if (o.from !== undefined && o.from !== null) { const f = v.obj(o.from, 'from'); m.from = { nodeId: v.nodeId(f), port: port(f) } }
      if (o.since !== undefined && o.since !== null) {
        m.since = v.int(o, 'since')
        m.lacks = v.bytes(o, 'lacks', MAX_BITFIELD_BYTES)
        m.waitMs = v.int(o, 'waitMs', 0, MAX_WATCH_MS)
        if (o.needHashes !== undefined && o.needHashes !== null) m.needHashes = v.bool(o, 'needHashes')
      }
      return m
    }
    case 'have': {
      const totalPieces = v.int(o, 'totalPieces', 0, MAX_PIECES)
      const m: Have = { type: 'have', req: req(o), fileId: v.hash(o, 'fileId'), totalPieces }
      if (o.bitfield !== undefined && o.bitfield !== null) {
        m.bitfield = v.bytes(o, 'bitfield', Math.ceil(totalPieces / 8))
        if (m.bitfield.length !== Math.ceil(totalPieces / 8)) throw new ProtocolError('bitfield length does not match totalPieces')
      }
      if (o.sent !== undefined && o.sent !== null) {
        m.sent = v.bytes(o, 'sent', Math.ceil(totalPieces / 8))
        if (m.sent.length !== Math.ceil(totalPieces / 8)) throw new ProtocolError('sent length does not match totalPieces')
      }
      if (o.pending !== undefined && o.pending !== null) {
        m.pending = v.bytes(o, 'pending', Math.ceil(totalPieces / 8))
        if (m.pending.length !== Math.ceil(totalPieces / 8)) throw new ProtocolError('pending length does not match totalPieces')
      }
      if (o.version !== undefined && o.version !== null) m.version = v.int(o, 'version', 0, totalPieces)
      if (o.hashes !== undefined && o.hashes !== null) m.hashes = v.bool(o, 'hashes')
      return m
    }
    case 'leech': {
      const m: Leech = { type: 'leech', req: req(o), hash: v.hash(o, 'hash'), size: v.int(o, 'size', 0, MAX_FILE_SIZE), offset: v.int(o, 'offset'), blockSize: v.int(o, 'blockSize', PAGE_SIZE, MAX_BLOCK_SIZE), pieces: v.int(o, 'pieces', 0, MAX_PIECES) }
      checkSegmentation(m.size, m.blockSize, m.pieces)
      if (m.offset % m.blockSize !== 0 || m.offset >= m.size) throw new ProtocolError(`offset ${m.offset} is not a piece of this file`)
      if (o.copies !== undefined && o.copies !== null) m.copies = v.int(o, 'copies', 0, 0xffff)
      if (o.starved !== undefined && o.starved !== null) m.starved = v.bool(o, 'starved')
      return m
    }
    case 'piece': {
      const m: Piece = { type: 'piece', req: req(o), pieceSize: v.int(o, 'pieceSize', 0, MAX_BLOCK_SIZE), offset: v.int(o, 'offset'), totalPieces: v.int(o, 'totalPieces', 0, MAX_PIECES), clusterName: v.hash(o, 'clusterName') }
      if (o.bitfield !== undefined && o.bitfield !== null) {
        m.bitfield = v.bytes(o, 'bitfield', Math.ceil(m.totalPieces / 8))
        if (m.bitfield.length !== Math.ceil(m.totalPieces / 8)) throw new ProtocolError('bitfield length does not match totalPieces')
      }
      return m
    }
    case 'error': {
      const m: PeerErrorReply = { type: 'error', req: req(o), code: v.str(o, 'code', 32), message: v.str(o, 'message', 512) }
      if (o.retryMs !== undefined && o.retryMs !== null) m.retryMs = v.int(o, 'retryMs', 0, MAX_BUSY_RETRY_MS)
      return m
    }
    default: throw new ProtocolError(`unknown peer message type ${typeName(o.type)}`)
  }
}

/** A printable description of an unknown `type` field (which may be any CBOR value). */
function typeName (t: unknown): string {
  return typeof t === 'string' ? JSON.stringify(t.slice(0, 40)) : `of kind ${t === null ? 'null' : typeof t}`
}

/** Byte range of piece `index`: [index·blockSize, min(size, (index+1)·blockSize)). */
export function pieceLength (size: number, blockSize: number, index: number): number {
  return Math.max(0, Math.min(blockSize, size - index * blockSize))
}
