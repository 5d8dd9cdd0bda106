import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { defer, distinctUntilChanged, exhaustMap, map, type Observable, timer } from 'rxjs'
import { UsageError } from '../errors'
import { parseEndpoint } from '../net/address'
import type { FileMetaData } from '../protocol/messages'
import type { Endpoint } from '../tracker/flow'
import { parseRate } from '../../streams/rateLimit'
import { NODE_TTL_MS } from '../limits'
import { downloadEvents, type DownloadEvent } from './events'
import { Lp2pNode, type NodeLeechOptions, type ShareEvent, type ShareWatchOptions } from './node'

/** Polling the tracker's file list faster than this is refused. */
export const MIN_FILES_POLL_MS = 100

export interface NodeOptions {
  /** The tracker: "host:port" or `{ address, port }`. */
  tracker: string | Endpoint
  /** Address to bind and to be reached at (an IP; default: the address this machine reaches the tracker from). */
  host?: string
  /** TCP port for peers (default 0: any free port). */
  port?: number
  /** A folder whose files this node shares (hashed and published by `createNode`). */
  share?: string
  /** Keep following `share` (default true): new files published, removed ones withdrawn. */
  watch?: boolean | ShareWatchOptions
  /** Serve pieces to other peers (default true; false for a node that only asks the tracker). */
  serve?: boolean
  /** Bytes/s, or a rate like "10M" (k/M/G = 10^3/10^6/10^9, Ki/Mi/Gi powers of 1024); 0 or Infinity: no cap. */
  uploadLimit?: number | string
  /** The same, for all downloads of the node together. */
  downloadLimit?: number | string
  /** Period of heartbeats to the tracker (default 3000 ms; 100–7500). */
  heartbeatMs?: number
  /** The first try of a tracker request waits this long (default 250 ms; each retry twice as long). */
  trackerTimeoutMs?: number
  /** Tries per tracker request (default 5). */
  trackerAttempts?: number
}

/** A file the tracker knows: the shape `lp2p ls --json` prints. */
/** A file: its metadata and, in the tracker's list (`files$`, `watchFiles`), how many live nodes hold it. */
export interface FileInfo { name: string, fileId: string, size: number, blockSize: number, pieces: number, holders?: number }

export interface LeechParams extends Omit<NodeLeechOptions, 'downloadLimit'> {
  /** Folder to write into: NAME.part while downloading, NAME once verified. */
  out: string
  /** Bytes/s (or a rate string) for this download alone, within the node's `downloadLimit`. */
  downloadLimit?: number | string
  /** Least time between two `progress` events (default 250 ms). */
  progressIntervalMs?: number
}

/** A started node (see `createNode`). */
export interface NodeHandle {
  readonly nodeId: string
  /** Where peers reach this node (TCP), or null when it does not serve. */
  readonly address: Endpoint | null
  /** The files this node shares right now. */
  readonly shared: FileInfo[]
  /** The tracker's file list: one request per subscription, one emission, then complete. */
  readonly files$: Observable<FileInfo[]>
  /** The tracker's file list every `intervalMs`, emitted when it changed (first one at once). */
  watchFiles: (intervalMs: number) => Observable<FileInfo[]>
  /** Download one file by exact name or file-id prefix; cold, cancellable by unsubscribing. */
  leech: (fileIdOrName: string, params: LeechParams) => Observable<DownloadEvent>
  /** Files published or withdrawn as the shared folder changes (hot; completes on close). */
  readonly shareChanges$: Observable<ShareEvent>
  /** The node underneath, for what this facade does not cover. */
  readonly core: Lp2pNode
  /** Stop downloads, serving, heartbeats; release sockets and mappings. Safe to call twice. */
  close: () => Promise<void>
}

const info = (f: FileMetaData): FileInfo => ({ name: f.name, fileId: f.hash, size: f.size, blockSize: f.blockSize, pieces: f.pieces })

const isInt = (v: unknown, min: number, max: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max

/** Heartbeats more often than this are refused (each is a datagram to the tracker). */
export const MIN_HEARTBEAT_MS = 100

function rateOf (v: number | string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined
  if (typeof v === 'number') {
    if (Number.isNaN(v) || v < 0) throw new UsageError(`${what} must be a number of bytes/s >= 0, got ${v}`)
    return v
  }
  try { return parseRate(v) } catch (err) { throw new UsageError(`${what}: ${(err as Error).message}`) }
}

/**
 * Create and start a node: bind its sockets, hash and publish `share` (if given), start
 * heartbeats. Resolves once the node is ready; rejects with a UsageError on bad options.
 */
export async function createNode (options: NodeOptions): Promise<NodeHandle> {
  if (typeof options !== 'object' || options === null) throw new UsageError('createNode needs an options object')
  const tracker = typeof options.tracker === 'string' ? parseEndpoint(options.tracker, 'tracker') : options.tracker
  if (typeof tracker !== 'object' || tracker === null || typeof tracker.address !== 'string' || net.isIP(tracker.address) === 0 || !isInt(tracker.port, 1, 65535)) {
    throw new UsageError('tracker must be "host:port" or { address: an IP address, port: 1–65535 }')
  }
  if (options.host !== undefined && (typeof options.host !== 'string' || net.isIP(options.host) === 0)) throw new UsageError(`host must be an IP address, got ${String(options.host)}`)
  if (options.port !== undefined && !isInt(options.port, 0, 65535)) throw new UsageError(`port must be an integer in 0–65535 (0: any free port), got ${String(options.port)}`)
  if (options.heartbeatMs !== undefined && !isInt(options.heartbeatMs, MIN_HEARTBEAT_MS, NODE_TTL_MS / 2)) throw new UsageError(`heartbeatMs must be in ${MIN_HEARTBEAT_MS}–${NODE_TTL_MS / 2} ms (the tracker forgets a node silent for ${NODE_TTL_MS} ms), got ${String(options.heartbeatMs)}`)
  if (options.trackerTimeoutMs !== undefined && !isInt(options.trackerTimeoutMs, 1, 60_000)) throw new UsageError(`trackerTimeoutMs must be in 1–60000 ms, got ${String(options.trackerTimeoutMs)}`)
  if (options.trackerAttempts !== undefined && !isInt(options.trackerAttempts, 1, 20)) throw new UsageError(`trackerAttempts must be an integer in 1–20, got ${String(options.trackerAttempts)}`)
  if (options.share !== undefined) {
    if (typeof options.share !== 'string' || options.share === '') throw new UsageError('share must be a folder')
    if (options.serve === false) throw new UsageError('share needs serve: a node that serves nothing cannot share a folder')
    let folder: boolean
    try { folder = fs.statSync(options.share).isDirectory() } catch (err) { throw new UsageError(`share: cannot read ${options.share}: ${(err as Error).message}`) }
    if (!folder) throw new UsageError(`share: ${options.share} is not a folder`)
  }
  const core = new Lp2pNode({
    tracker,
    host: options.host,
    port: options.port,
    share: options.share === undefined ? undefined : path.resolve(options.share),
    watch: options.watch,
    serve: options.serve,
    uploadLimit: rateOf(options.uploadLimit, 'uploadLimit'),
    downloadLimit: rateOf(options.downloadLimit, 'downloadLimit'),
    heartbeatMs: options.heartbeatMs,
    trackerTimeoutMs: options.trackerTimeoutMs,
    trackerAttempts: options.trackerAttempts,
  })
  try {
    await core.start()
  } catch (err) {
    await core.close()
    throw err
  }
  const files$ = defer(() => core.trackerClient.files()).pipe(map((fs) => fs.map((f) => f.holders === undefined ? info(f) : { ...info(f), holders: f.holders })))
  const key = (fs: FileInfo[]): string => fs.map((f) => f.fileId).join(',')
  return {
    nodeId: core.nodeId,
    get address () { return core.address },
    get shared () { return core.publishedFiles.map(info) },
    files$,
    watchFiles: (intervalMs) => {
      if (!(Number.isFinite(intervalMs) && intervalMs >= MIN_FILES_POLL_MS)) throw new UsageError(`watchFiles interval must be at least ${MIN_FILES_POLL_MS} ms`)
      return timer(0, intervalMs).pipe(exhaustMap(() => files$), distinctUntilChanged((a, b) => key(a) === key(b)))
    },
    leech: (fileIdOrName, params) => {
      if (typeof fileIdOrName !== 'string' || fileIdOrName === '') throw new UsageError('leech needs a file name or id prefix')
      if (typeof params?.out !== 'string' || params.out === '') throw new UsageError('leech needs { out: folder }')
      const { out, downloadLimit, progressIntervalMs, ...tuning } = params
      const own = rateOf(downloadLimit, 'downloadLimit')
      return core.leech(fileIdOrName, path.resolve(out), { ...tuning, ...(own === undefined ? {} : { downloadLimit: own }) }).pipe(downloadEvents({ progressIntervalMs }))
    },
    shareChanges$: core.shareChanges$,
    core,
    close: () => core.close(),
  }
}
