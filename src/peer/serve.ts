import { REMOTE_CODES, type FileMetaData, type PeerReply, type PeerRequest } from '../protocol/messages'
import type { PageSource } from '../../streams/readPages'
import type { ClusterTable } from './clusterTable'

/** A file this node can serve pieces of. */
export interface ServedFile {
  meta: FileMetaData
  source: PageSource
  /** Throws when the file on disk no longer matches what was mapped. */
  checkSize: () => void
}

export interface ServeContext {
  file: (fileId: string) => ServedFile | undefined
  cluster: ClusterTable
  /** Reported when a served file turned out to have changed on disk. */
  onFileChanged?: (fileId: string, err: Error) => void
}

/** A reply and, for pieces, the byte range of the file that follows it raw. */
export interface Outgoing {
  msg: PeerReply
  payload?: { source: PageSource, offset: number, length: number }
}

/**
 * A peer's answer to one request from a neighbour. Pure: looks things up in the context and
 * says what to send; the connection adapter streams the payload pages from the mapping.
 */
export function serveRequest (m: PeerRequest, ctx: ServeContext): Outgoing {
  const err = (code: string, message: string): Outgoing => ({ msg: { type: 'error', req: m.req, code, message } })
  switch (m.type) {
    case 'find_cluster':
      return { msg: { type: 'cluster', req: m.req, fileId: m.fileId, peers: ctx.cluster.peers(m.fileId) } }
    case 'probe': {
      const f = ctx.file(m.fileId)
      if (f === undefined) return err(REMOTE_CODES.notFound, 'file not held here')
      return { msg: { type: 'have', req: m.req, fileId: m.fileId, totalPieces: f.meta.pieces } }
    }
    case 'leech': {
      const f = ctx.file(m.hash)
      if (f === undefined) return err(REMOTE_CODES.notFound, 'file not held here')
      if (m.size !== f.meta.size) return err(REMOTE_CODES.badRequest, `size ${m.size} is not the file's size`)
      try {
        f.checkSize()
      } catch (e) {
        ctx.onFileChanged?.(m.hash, e as Error)
        return err(REMOTE_CODES.unavailable, 'file changed on disk')
      }
      const length = Math.min(m.blockSize, m.size - m.offset)
      const header: PeerReply = { type: 'piece', req: m.req, pieceSize: length, offset: m.offset, totalPieces: m.pieces, clusterName: m.hash }
      return { msg: header, payload: { source: f.source, offset: m.offset, length } }
    }
    default: {
      const never: never = m
      return err(REMOTE_CODES.badRequest, `unknown request ${(never as { type: string }).type}`)
    }
  }
}
