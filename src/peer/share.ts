import fs from 'node:fs'
import path from 'node:path'
import { log } from '../log'
import { MappedFile } from '../storage/mappedFile'
import { hashFile } from '../storage/hashFile'
import { segment } from '../protocol/segmentation'
import { safeFileName } from '../storage/names'

/** Most files taken from one shared folder. */
export const MAX_SHARED_FILES = 10_000
const MAX_DEPTH = 16

export interface LocalFile {
  path: string
  name: string
  size: number
  fileId: string
  file: MappedFile
  /** Piece hashes for `blockSize` (the segmentation the tracker will most likely choose). */
  blockSize: number
  pieceHashes: Buffer
  root: string
}

/**
 * Every regular file under `dir` (recursively; symlinks and special files are skipped), mapped
 * and hashed. A file is published under its base name; names that would be unsafe on a
 * leecher's disk are skipped with a warning, and identical contents are shared once.
 */
export async function scanShare (dir: string, onFile?: (f: LocalFile) => void): Promise<LocalFile[]> {
  const l = log.child({ module: 'share' })
  const out: LocalFile[] = []
  const seen = new Set<string>()
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > MAX_DEPTH) { l.warn({ dir: d }, 'folder nested too deep: skipped'); return }
    const entries = await fs.promises.readdir(d, { withFileTypes: true })
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    for (const e of entries) {
      if (out.length >= MAX_SHARED_FILES) { l.warn({ dir }, `more than ${MAX_SHARED_FILES} files: the rest are not shared`); return }
      const p = path.join(d, e.name)
      if (e.isDirectory()) { await walk(p, depth + 1); continue }
      if (!e.isFile()) continue
      if (e.name.endsWith('.part')) continue // a download in progress is not a file to share
      try {
        safeFileName(e.name)
      } catch (err) {
        l.warn({ path: p, err: (err as Error).message }, 'file name unsafe to publish: skipped')
        continue
      }
      let file: MappedFile
      try {
        file = MappedFile.open(p)
      } catch (err) {
        l.warn({ path: p, err: (err as Error).message }, 'cannot open shared file: skipped')
        continue
      }
      const h = await hashFile(file, segment(file.size).blockSize)
      if (seen.has(h.fileId)) { file.close(); continue }
      seen.add(h.fileId)
      const f: LocalFile = { path: p, name: e.name, size: file.size, file, ...h }
      out.push(f)
      onFile?.(f)
    }
  }
  await walk(dir, 0)
  return out
}
