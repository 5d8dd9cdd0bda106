import fs from 'node:fs'
import path from 'node:path'

/**
 * mkdir -p, one level at a time: node's recursive mkdir loops for ever (at full CPU, deaf to
 * signals) where a folder exists but refuses children with ENOENT (procfs: `--out /proc/x`).
 */
export function mkdirs (dir: string): void {
  const missing: string[] = []
  let d = path.resolve(dir)
  for (;;) {
    try {
      if (!fs.statSync(d).isDirectory()) throw Object.assign(new Error(`${d} is not a folder`), { code: 'ENOTDIR' })
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      missing.push(d)
      const up = path.dirname(d)
      if (up === d) break
      d = up
    }
  }
  for (const m of missing.reverse()) {
    try { fs.mkdirSync(m) } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err }
  }
}

/**
 * The folders `parts` below `dir` (which must exist), made where missing, none of them a link:
 * the folders of a name from the network (`train/0001.png`) are walked, never followed (a link
 * planted in --out would have the download written wherever it points). Returns the last.
 */
export function subfolders (dir: string, parts: string[]): string {
  let d = dir
  for (const p of parts) {
    d = path.join(d, p)
    try { fs.mkdirSync(d) } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err }
    const st = fs.lstatSync(d)
    if (st.isSymbolicLink()) throw Object.assign(new Error(`${d} is a link: a download is not written through it`), { code: 'ELOOP' })
    if (!st.isDirectory()) throw Object.assign(new Error(`${d} is not a folder`), { code: 'ENOTDIR' })
  }
  return d
}
