import { AmbiguousError, NotFoundError } from '../errors'
import type { FileMetaData } from '../protocol/messages'

/**
 * Find the one file a user means: an exact name, or else a prefix of its id. More than one match
 * is an error that lists them; so is none.
 */
export function resolveFile (files: FileMetaData[], query: string): FileMetaData {
  const byName = files.filter((f) => f.name === query)
  if (byName.length === 1) return byName[0]
  if (byName.length > 1) throw new AmbiguousError(query, byName.map((f) => ({ name: f.name, fileId: f.hash })))
  const q = query.toLowerCase()
  const byId = /^[0-9a-f]{1,64}$/.test(q) ? files.filter((f) => f.hash.startsWith(q)) : []
  if (byId.length === 1) return byId[0]
  if (byId.length > 1) throw new AmbiguousError(query, byId.map((f) => ({ name: f.name, fileId: f.hash })))
  throw new NotFoundError(query)
}
