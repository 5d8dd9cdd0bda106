/**
 * local-p2p as a library: named exports only. The CLI (`lp2p`) is built from these.
 * Start with `createNode` (see the README's "API" section).
 */
export { createNode, MIN_FILES_POLL_MS, type FileInfo, type LeechParams, type NodeHandle, type NodeOptions } from './peer/createNode'
export { downloadEvents, PROGRESS_PER_SECOND, type DownloadErrorEvent, type DownloadEvent, type DownloadEventsOptions } from './peer/events'
export { Lp2pNode, type NodeLeechOptions, type NodeOptions as Lp2pNodeOptions, type ShareEvent, type ShareWatchOptions } from './peer/node'
export { leech, leechFile, type LeechDeps, type LeechEvent, type LeechOptions, type PieceSink } from './peer/leech'
export { TrackerServer, type TrackerServerOptions } from './tracker/server'
export { trackerFlow, type Inbound, type Outbound, type Endpoint } from './tracker/flow'
export { TrackerClient, trackerRequest, type TrackerTransport } from './net/trackerClient'
export { SqliteFileStore } from './tracker/sqliteStore'
export { MemoryFileStore, Registry, type FileStore } from './tracker/registry'
export { MemorySink } from './storage/memorySink'
export { printable } from './storage/names'
export type { FileMetaData, NodeInfo, PeerAddress, PeerMessage, TrackerMessage } from './protocol/messages'
export * from './errors'
export { runScenario, kumarRoss, type ScenarioOptions, type ScenarioResult } from './sim/scenario'
