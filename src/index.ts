/**
 * local-p2p as a library: named exports only. The CLI (`lp2p`) is built from these.
 */
export { Lp2pNode, type NodeOptions } from './peer/node'
export { leech, leechFile, type LeechDeps, type LeechEvent, type LeechOptions, type PieceSink } from './peer/leech'
export { TrackerServer, type TrackerServerOptions } from './tracker/server'
export { trackerFlow, type Inbound, type Outbound, type Endpoint } from './tracker/flow'
export { TrackerClient, trackerRequest, type TrackerTransport } from './net/trackerClient'
export { SqliteFileStore } from './tracker/sqliteStore'
export { MemoryFileStore, Registry, type FileStore } from './tracker/registry'
export { MemorySink } from './storage/memorySink'
export type { FileMetaData, NodeInfo, PeerAddress, PeerMessage, TrackerMessage } from './protocol/messages'
export * from './errors'
