import { UsageError } from '../errors'
import { printable } from '../storage/names'

/** 1536 → "1.5 KiB". */
export function bytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = 0
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++ }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`
}

/** A plain-text table; every cell is made printable (names come from the network). */
export function table (head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map((c) => printable(String(c))))]
  const widths = head.map((_, i) => Math.max(...cells.map((r) => r[i].length)))
  return cells.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join('  ')).join('\n') + '\n'
}

export function ago (ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`
}

/** Seconds left as a short clock: "42s", "3m05s", "2h07m"; "?" when unknown. */
export function duration (secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return '?'
  const s = Math.ceil(secs)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  if (s < 100 * 3600) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
  return '>99h'
}

/** The first `width` characters of `s`, with "…" when cut. */
export function clip (s: string, width: number): string {
  if (width <= 0) return ''
  return s.length <= width ? s : s.slice(0, width - 1) + '…'
}

/** "30", "30s", "1500ms", "2m" → ms. */
export function parseDuration (v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim())
  if (m === null) throw new UsageError(`duration "${v}" is not a number with an optional ms/s/m suffix (seconds by default)`)
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000)
}
