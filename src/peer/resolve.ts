import { AmbiguousError, NotFoundError } from '../errors'
import { printable, quoted } from '../text'
import type { FileMetaData, ListedFile } from '../protocol/messages'

/**
 * Find the one file a user means: an exact name, or else a prefix of its id. When several match,
 * the ones some live node holds are taken over those nobody holds any more (a file changed on
 * disk is published again under a new id, and its old version stays listed, held by no one); more
 * than one left is an error that lists them; so is none.
 */
export function resolveFile (files: ListedFile[], query: string): FileMetaData {
  const byName = files.filter((f) => f.name === query)
  if (byName.length > 0) return one(query, byName)
  const q = query.toLowerCase()
  const byId = /^[0-9a-f]{1,64}$/.test(q) ? files.filter((f) => f.hash.startsWith(q)) : []
  if (byId.length > 0) return one(query, byId)
  throw new NotFoundError(query, hint(files, query))
}

/** A file not found by its name may be in a folder (`train/0001.png`), or the name a folder: said. */
function hint (files: ListedFile[], query: string): string | undefined {
  if (files.some((f) => f.name.startsWith(query + '/'))) return `a folder: \`get ${printable(query)}/\` fetches the files in it`
  const inFolders = [...new Set(files.filter((f) => f.name.endsWith('/' + query)).map((f) => f.name))].sort()
  if (inFolders.length === 0) return undefined
  const shown = inFolders.slice(0, HINTED_NAMES).map(quoted).join(', ')
  return `files in folders are named by their path: ${shown}${inFolders.length > HINTED_NAMES ? `, and ${inFolders.length - HINTED_NAMES} more` : ''}`
}

/** Names a "not found" suggests at most. */
const HINTED_NAMES = 5

function one (query: string, matches: ListedFile[]): FileMetaData {
  // (a tracker that does not say how many hold a file: every match may be held)
  const held = matches.length > 1 ? matches.filter((f) => f.holders === undefined || f.holders > 0) : matches
  const left = held.length === 0 ? matches : held
  if (left.length > 1) throw new AmbiguousError(query, left.map((f) => ({ name: f.name, fileId: f.hash, ...(f.holders === undefined ? {} : { holders: f.holders }) })))
  const { holders, ...meta } = left[0]
  return meta
}
