import { catchError, map, mergeMap, from, of, reduce, take, timeout, asyncScheduler, type Observable, type SchedulerLike } from 'rxjs'
import { DASHBOARD_HEATMAP_CELLS, DASHBOARD_PROBE_TIMEOUT_MS } from '../../limits'
import type { Have, PeerAddress } from '../../protocol/messages'

/** How many of the probed holders hold each piece of a file. */
export interface Availability {
  /** Per piece: holders that answered and hold it. */
  counts: Uint16Array
  /** Holders probed, and how many of them answered. */
  probed: number
  answered: number
}

/** A file whose holders are to be probed. */
export interface ProbeTarget { fileId: string, pieces: number, holders: PeerAddress[] }

export type ProbeOutcome = 'ok' | 'timeout' | 'error'

export interface ProbeDeps {
  /** Ask one holder which pieces of a file it holds (one `have` reply). */
  probe: (peer: PeerAddress, fileId: string) => Observable<Have>
  scheduler?: SchedulerLike
  timeoutMs?: number
  /** Probes in flight at once. */
  concurrency?: number
  onProbe?: (outcome: ProbeOutcome, peer: PeerAddress, err?: Error) => void
}

/** Set the count of every piece a `have` says is held (no bitfield: all of them). */
export function addHave (counts: Uint16Array, have: Pick<Have, 'bitfield'>): void {
  const bf = have.bitfield
  for (let i = 0; i < counts.length; i++) {
    if (bf === undefined || (bf[i >> 3] & (0x80 >> (i & 7))) !== 0) counts[i] = Math.min(0xffff, counts[i] + 1)
  }
}

/**
 * One round of availability probes: every (file, holder) pair is probed once, each with its own
 * timeout; a holder that fails or is silent counts as holding nothing this round ("move on").
 * Emits one map fileId → Availability, then completes. No sockets here: `probe` is injected.
 */
export function probeAvailability (targets: ProbeTarget[], deps: ProbeDeps): Observable<Map<string, Availability>> {
  const scheduler = deps.scheduler ?? asyncScheduler
  const timeoutMs = deps.timeoutMs ?? DASHBOARD_PROBE_TIMEOUT_MS
  const acc = new Map<string, Availability>(targets.map((t) => [t.fileId, { counts: new Uint16Array(t.pieces), probed: t.holders.length, answered: 0 }]))
  const pairs = targets.flatMap((t) => t.holders.map((peer) => ({ t, peer })))
  return from(pairs).pipe(
    mergeMap(({ t, peer }) => deps.probe(peer, t.fileId).pipe(
      take(1),
      timeout({ first: timeoutMs, scheduler }),
      map((have) => {
        if (have.fileId !== t.fileId || have.totalPieces !== t.pieces) throw new RangeError(`have for ${have.totalPieces} pieces, the file has ${t.pieces}`)
        deps.onProbe?.('ok', peer)
        return { fileId: t.fileId, have: have as Have | null }
      }),
      catchError((err: Error) => {
        deps.onProbe?.(err.name === 'TimeoutError' ? 'timeout' : 'error', peer, err)
        return of({ fileId: t.fileId, have: null })
      }),
    ), deps.concurrency ?? 32),
    reduce((m, r) => {
      const a = m.get(r.fileId) as Availability
      if (r.have !== null) { a.answered++; addHave(a.counts, r.have) }
      return m
    }, acc),
  )
}

/** A file's heatmap: per cell (a run of consecutive pieces), the least and the mean holders of its pieces. */
export interface Heatmap { piecesPerCell: number, min: number[], mean: number[] }

/** Downsample per-piece counts to at most `cells` cells, so a file of many pieces stays a fixed width. */
export function heatmap (counts: ArrayLike<number>, cells = DASHBOARD_HEATMAP_CELLS): Heatmap {
  const n = counts.length
  const per = Math.max(1, Math.ceil(n / cells))
  const min: number[] = []; const mean: number[] = []
  for (let s = 0; s < n; s += per) {
    let lo = Infinity; let sum = 0
    const e = Math.min(n, s + per)
    for (let i = s; i < e; i++) { lo = Math.min(lo, counts[i]); sum += counts[i] }
    min.push(lo); mean.push(Math.round(sum * 100 / (e - s)) / 100)
  }
  return { piecesPerCell: per, min, mean }
}
