import { BadNameError } from '../errors'
import { MAX_FOLDER_DEPTH, MAX_NAME_BYTES, MAX_PATH_NAME_BYTES } from '../limits'
import { quoted, UNSAFE_CHARS } from '../text'

export { printable } from '../text'

// Windows device names are refused everywhere: a file shared from Linux may be fetched on Windows
const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i
// characters Windows refuses in names (a:b would even open an NTFS stream)
const WINDOWS_FORBIDDEN = /[<>:"|?*]/

/**
 * Check that a name from the network can be used as one path component inside the output
 * folder. Returns it unchanged or throws BadNameError: no separators, no `.`/`..`, no NUL or
 * control characters, no reserved device names, at most MAX_NAME_BYTES bytes.
 */
export function safeFileName (name: string): string {
  if (name.length === 0) throw new BadNameError(name, 'empty')
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw new BadNameError(name.slice(0, 40), `longer than ${MAX_NAME_BYTES} bytes`)
  if (name.includes('/') || name.includes('\\')) throw new BadNameError(name, 'contains a path separator')
  if (name === '.' || name === '..') throw new BadNameError(name, 'is a relative path')
  if (UNSAFE_CHARS.test(name)) throw new BadNameError(name, 'contains control characters')
  if (WINDOWS_FORBIDDEN.test(name)) throw new BadNameError(name, 'contains a character Windows forbids (<>:"|?*)')
  if (RESERVED.test(name)) throw new BadNameError(name, 'is a reserved device name')
  if (name.endsWith('.') || name.endsWith(' ')) throw new BadNameError(name, 'ends with a dot or space')
  return name
}

/**
 * Check that a published name can be used as a path inside the output folder: one safe name
 * (`safeFileName`), or several joined by `/` (a file in a folder of its sharer's: `train/0001.png`),
 * at most MAX_FOLDER_DEPTH folders deep and MAX_PATH_NAME_BYTES long. No part may be empty, `.`
 * or `..` (so no absolute path, no way out of the folder), and none may hold a backslash. Returns
 * it unchanged or throws BadNameError.
 */
export function safeRelativeName (name: string): string {
  if (Buffer.byteLength(name) > MAX_PATH_NAME_BYTES) throw new BadNameError(name.slice(0, 40), `longer than ${MAX_PATH_NAME_BYTES} bytes`)
  const parts = name.split('/')
  if (parts.length > MAX_FOLDER_DEPTH + 1) throw new BadNameError(name, `more than ${MAX_FOLDER_DEPTH} folders deep`)
  if (parts.length > 1 && parts.some((p) => p.length === 0)) throw new BadNameError(name, name.startsWith('/') ? 'is an absolute path' : 'has an empty part (a leading, trailing or double /)')
  if (parts.length > 1 && parts.some((p) => p === '.' || p === '..')) throw new BadNameError(name, 'has a . or .. part')
  for (const p of parts) {
    try {
      safeFileName(p)
    } catch (err) {
      if (parts.length === 1 || !(err instanceof BadNameError)) throw err
      throw new BadNameError(name, `its part ${quoted(p)} ${err.reason}`)
    }
  }
  return name
}

/** The parts of a safe relative name: its folders, then its file name. */
export function nameParts (name: string): { folders: string[], base: string } {
  const parts = safeRelativeName(name).split('/')
  return { folders: parts.slice(0, -1), base: parts[parts.length - 1] }
}

/** The longest suffix a download's working files add to their stem: `.part.state.tmp`. */
const WORK_SUFFIX_BYTES = Buffer.byteLength('.part.state.tmp')

/**
 * The stem of a download's working files (STEM.part, .part.lock, .part.state and its .tmp): the
 * name itself, or, for a name too long to take those suffixes within MAX_NAME_BYTES, its start
 * then `~` and 16 hex digits of the file id (the same for every run: a resume finds them).
 */
export function partStem (name: string, fileId: string): string {
  const room = MAX_NAME_BYTES - WORK_SUFFIX_BYTES
  if (Buffer.byteLength(name) <= room) return name
  const tag = `~${fileId.slice(0, 16)}`
  let stem = ''
  let bytes = 0
  for (const ch of name) { // whole characters: a cut UTF-8 sequence would not be this name's start
    const n = Buffer.byteLength(ch)
    if (bytes + n > room - tag.length) break
    stem += ch; bytes += n
  }
  return stem + tag
}
