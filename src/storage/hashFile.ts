import { createHash } from 'node:crypto'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { MappedFile } from './mappedFile'

const SLICE = 16 * 1024 * 1024

/**
 * SHA-256 of a file read through its mapping, a slice at a time so the event loop keeps
 * serving in between. Memory stays flat whatever the size.
 */
export async function hashFile (file: MappedFile): Promise<string> {
  const h = createHash('sha256')
  for (let pos = 0; pos < file.size; pos += SLICE) {
    for (const v of file.view(pos, Math.min(SLICE, file.size - pos))) h.update(v)
    await yieldToLoop()
  }
  file.checkSize()
  return h.digest('hex')
}
