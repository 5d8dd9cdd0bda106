import { asyncScheduler, catchError, concat, defer, EMPTY, filter, map, merge, mergeMap, Observable, of, tap, throwError, timeout, toArray, type SchedulerLike } from 'rxjs'
import { HashMismatchError, NoSourcesError, PeerTimeoutError, ProtocolError } from '../errors'
import { FAN_OUT, MAX_SOURCES, PIECE_TIMEOUT_MS, PIPELINE, QUERY_TIMEOUT_MS } from '../limits'
import type { FileMetaData, NodeInfo, PeerAddress } from '../protocol/messages'
import type { Frame } from '../protocol/frames'
import type { PeerLink } from '../net/peerConnection'
import { fanOutQuery, isAnswer } from '../../streams/fanOutQuery'
import { leechPieces } from '../../streams/leechPieces'
import { writeSink, type PositionalWriter } from '../../streams/writeSink'
import { PiecePicker } from './picker'
import { resolveFile } from './resolve'

/** Where a download's pieces go (a .part file in production, memory in tests). */
export interface PieceSink extends PositionalWriter {
  /** Pieces already stored and verified by an earlier run (resume), as piece indexes. */
  readonly present?: number[]
  /** Tell the sink a piece is stored (after its write completed). The sink owns `data` from here on. */
  stored: (offset: number, data: Buffer) => void
  /** Whole-file SHA-256 of what was stored. */
  digest: () => Observable<string>
  /** Make the verified file visible under its final name; returns where. */
  commit: () => string
  /** Give up without committing (the partial file stays for resume). */
  close: () => void
}

export interface LeechDeps {
  tracker: {
    files: () => Observable<FileMetaData[]>
    nodes: (fileId: string) => Observable<NodeInfo[]>
  }
  /** A (cached) link to a peer. */
  link: (peer: PeerAddress) => PeerLink
  openSink: (meta: FileMetaData) => PieceSink
  scheduler?: SchedulerLike
  /** This node's id: never a source for itself. */
  selfId?: string
}

export interface LeechOptions {
  fanOut?: number
  queryTimeoutMs?: number
  pieceTimeoutMs?: number
  pipeline?: number
  maxSources?: number
}

const label = (p: PeerAddress): string => `${p.host}:${p.port}`

export type LeechEvent =
  | { event: 'start', fileId: string, name: string, size: number, blockSize: number, pieces: number, present: number }
  | { event: 'peers', neighbours: number, cluster: number, sources: number }
  | { event: 'piece', index: number, bytes: number, peer: string }
  | { event: 'peer-dropped', peer: string, code: string, error: string }
  | { event: 'done', fileId: string, name: string, path: string, bytes: number, sha256: string, downloaded: number }

/**
 * Fetch one file, as a stream of events ending in `done`: query files → resolve the name →
 * bootstrap nodes → fan a cluster query out to neighbours → probe the cluster → leech pieces
 * from every source at once (each an `expand` over offsets) → verify the whole-file hash →
 * commit. Pure wiring of the injected tracker, links and sink; time from the scheduler.
 * Unsubscribing stops everything and leaves the partial file for resume.
 */
export function leech (query: string, deps: LeechDeps, opts: LeechOptions = {}): Observable<LeechEvent> {
  return deps.tracker.files().pipe(
    map((files) => resolveFile(files, query)),
    mergeMap((meta) => leechFile(meta, deps, opts)),
  )
}

/** The flow after the file is known. */
export function leechFile (meta: FileMetaData, deps: LeechDeps, opts: LeechOptions = {}): Observable<LeechEvent> {
  const scheduler = deps.scheduler ?? asyncScheduler
  return new Observable<LeechEvent>((sub) => {
    const sink = deps.openSink(meta)
    const picker = new PiecePicker(meta.pieces)
    for (const i of sink.present ?? []) picker.markDone(i)
    let downloaded = 0
    const start: LeechEvent = { event: 'start', fileId: meta.hash, name: meta.name, size: meta.size, blockSize: meta.blockSize, pieces: meta.pieces, present: meta.pieces - picker.remaining }
    const transfer$ = picker.complete
      ? EMPTY
      : discover(meta, deps, opts, scheduler).pipe(
        mergeMap(({ sources, event }) => concat(of(event), fetchAll(meta, sources, picker, sink, deps, opts, scheduler))),
        tap((e) => { if (e.event === 'piece') downloaded += e.bytes }),
      )
    const finish$ = defer(() => sink.digest()).pipe(map((sha256): LeechEvent => {
      if (sha256 !== meta.hash) throw new HashMismatchError(meta.hash, sha256)
      const path = sink.commit()
      return { event: 'done', fileId: meta.hash, name: meta.name, path, bytes: meta.size, sha256, downloaded }
    }))
    const s = concat(of(start), transfer$, finish$).subscribe(sub)
    return () => { s.unsubscribe(); sink.close() }
  })
}

interface Source { peer: PeerAddress, bitfield: Uint8Array | null }

/** Bootstrap → cluster fan-out → probe: the sources worth leeching from. */
function discover (meta: FileMetaData, deps: LeechDeps, opts: LeechOptions, scheduler: SchedulerLike): Observable<{ sources: Source[], event: LeechEvent }> {
  const timeoutMs = opts.queryTimeoutMs ?? QUERY_TIMEOUT_MS
  const notSelf = (p: PeerAddress): boolean => p.nodeId !== deps.selfId
  return deps.tracker.nodes(meta.hash).pipe(
    mergeMap((nodes) => {
      const neighbours = nodes.filter(notSelf).slice(0, opts.fanOut ?? FAN_OUT)
      // the cluster query: every neighbour at once, each with its own timeout
      return fanOutQuery(neighbours, (n) => deps.link(n).request({ type: 'find_cluster', fileId: meta.hash }), {
        timeoutMs, concurrency: neighbours.length || 1, scheduler, onTimeout: (n) => new PeerTimeoutError(label(n), 'find_cluster'),
      }).pipe(toArray(), map((answers) => ({ neighbours, answers })))
    }),
    mergeMap(({ neighbours, answers }) => {
      const cluster = new Map<string, PeerAddress>()
      for (const a of answers) {
        if (!isAnswer(a)) continue
        cluster.set(a.target.nodeId, a.target)
        if (a.value.msg.type === 'cluster') for (const p of a.value.msg.peers) if (notSelf(p) && !cluster.has(p.nodeId)) cluster.set(p.nodeId, p)
      }
      const members = [...cluster.values()].slice(0, 4 * (opts.maxSources ?? MAX_SOURCES))
      return fanOutQuery(members, (p) => deps.link(p).request({ type: 'probe', fileId: meta.hash }), {
        timeoutMs, concurrency: members.length || 1, scheduler, onTimeout: (p) => new PeerTimeoutError(label(p), 'probe'),
      }).pipe(
        filter(isAnswer),
        map((a) => toSource(a.target, a.value, meta)),
        filter((s): s is Source => s !== null),
        toArray(),
        map((all) => {
          const sources = all.slice(0, opts.maxSources ?? MAX_SOURCES)
          return { sources, event: { event: 'peers', neighbours: neighbours.length, cluster: members.length, sources: sources.length } as LeechEvent }
        }),
      )
    }),
  )
}

function toSource (peer: PeerAddress, f: Frame, meta: FileMetaData): Source | null {
  if (f.msg.type !== 'have' || f.msg.fileId !== meta.hash || f.msg.totalPieces !== meta.pieces) return null
  return { peer, bitfield: f.msg.bitfield ?? null }
}

/**
 * Leech from every source at once until every piece is stored. A source that fails is dropped
 * (its in-flight pieces go back to the picker) and the others carry on; when a round ends with
 * pieces still missing, the sources still alive start another round, and with none left the
 * download fails with NoSourcesError.
 */
function fetchAll (meta: FileMetaData, sources: Source[], picker: PiecePicker, sink: PieceSink, deps: LeechDeps, opts: LeechOptions, scheduler: SchedulerLike): Observable<LeechEvent> {
  const pieceTimeoutMs = opts.pieceTimeoutMs ?? PIECE_TIMEOUT_MS
  const pipeline = opts.pipeline ?? PIPELINE
  for (const s of sources) picker.addSource(s.peer.nodeId, s.bitfield)

  const fetchPiece = (src: Source, offset: number): Observable<LeechEvent> => {
    const index = offset / meta.blockSize
    const expected = Math.min(meta.blockSize, meta.size - offset)
    return deps.link(src.peer).request({ type: 'leech', hash: meta.hash, size: meta.size, offset, blockSize: meta.blockSize, pieces: meta.pieces }).pipe(
      timeout({ first: pieceTimeoutMs, scheduler, with: () => throwError(() => new PeerTimeoutError(label(src.peer), `piece ${index}`)) }),
      map((f) => {
        const m = f.msg
        if (m.type !== 'piece' || m.offset !== offset || m.pieceSize !== expected || m.clusterName !== meta.hash || f.payload?.length !== expected) {
          throw new ProtocolError(`peer ${label(src.peer)} sent a piece that was not asked for`)
        }
        return { position: offset, data: f.payload }
      }),
      writeSink(sink, 1),
      map((c) => {
        const bytes = c.data.length // the sink owns the buffer once stored (it may move it to a worker)
        sink.stored(c.position, c.data)
        picker.done(src.peer.nodeId, index)
        return { event: 'piece', index, bytes, peer: label(src.peer) } as LeechEvent
      }),
    )
  }

  const loop = (src: Source): Observable<LeechEvent> => {
    const id = src.peer.nodeId
    return leechPieces({
      next: () => { const i = picker.next(id); return i === null ? null : i * meta.blockSize },
      fetch: (offset) => fetchPiece(src, offset),
      pipeline,
    }).pipe(catchError((err: Error) => {
      picker.drop(id)
      dropped.add(id)
      return of<LeechEvent>({ event: 'peer-dropped', peer: label(src.peer), code: (err as { code?: string }).code ?? 'ERR_PEER', error: err.message })
    }))
  }

  const dropped = new Set<string>()
  const round = (): Observable<LeechEvent> => defer(() => {
    if (picker.complete) return EMPTY
    const live = sources.filter((s) => !dropped.has(s.peer.nodeId) && picker.useful(s.peer.nodeId))
    if (live.length === 0) return throwError(() => new NoSourcesError(meta.hash, picker.remaining))
    return concat(merge(...live.map(loop)), round())
  })
  return round()
}
