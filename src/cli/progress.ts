import readline from 'node:readline'
import { Format, SingleBar, type Options as BarOptions } from 'cli-progress'
import { asyncScheduler, Observable, Subject, tap, type MonoTypeOperatorFunction, type SchedulerLike } from 'rxjs'
import { downloadEvents } from '../peer/events'
import type { LeechEvent } from '../peer/leech'
import { printable } from '../storage/names'
import { aroundLogWrites } from '../log'
import { bytes, clip, duration } from './format'
import { errorCode } from './exit'

/** At most this many `progress` NDJSON events a second (one per 250 ms). */
export const JSON_PROGRESS_EVERY_MS = 250
/** Plain lines (not a terminal): one every 5 s, plus one at each of 25/50/75 %. */
export const LINES_EVERY_MS = 5000
export const LINES_MILESTONES = [25, 50, 75]
/** Redraws a second of the terminal bar. */
export const TTY_FPS = 5
/** Rates are measured over the last few seconds, so a stall shows at once and old bursts fade. */
export const RATE_WINDOW_MS = 5000
/** `peer --json`: one `serving` event every 2 s; plain lines: at most one every 5 s, only after a change. */
export const SERVING_JSON_EVERY_MS = 2000
export const SERVING_LINES_EVERY_MS = 5000
const MAX_RATE_SAMPLES = 32
const MAX_TRACKED_PEERS = 1024
const NAME_WIDTH = 24
const MIN_BAR_WIDTH = 8
const MAX_BAR_WIDTH = 30

export type ProgressMode = 'json' | 'tty' | 'lines'
/** Milliseconds, like `Date.now`; tests pass a fake one. */
export type Clock = () => number

export interface ProgressOptions {
  now?: Clock
  /** The name or id prefix asked for: `error` events (--json) carry it as `query`, since one that fails before its `start` names nothing else. */
  query?: string
  /** For the terminal bar's redraw timer; tests turn it down to keep runs quiet. */
  fps?: number
}

/**
 * Bytes a second over the last `windowMs`, from a running total. One sample per
 * `windowMs / MAX_RATE_SAMPLES` slot (a later one in the same slot replaces it), so memory stays
 * bounded however often it is fed.
 */
export class RateMeter {
  private readonly samples: { t: number, total: number }[] = []

  constructor (private readonly windowMs = RATE_WINDOW_MS) {}

  record (t: number, total: number): void {
    const step = this.windowMs / MAX_RATE_SAMPLES
    const n = this.samples.length
    if (n >= 2 && Math.floor(t / step) === Math.floor(this.samples[n - 1].t / step)) this.samples[n - 1] = { t, total }
    else this.samples.push({ t, total })
    this.prune(t)
  }

  rate (t: number): number {
    this.prune(t)
    const first = this.samples[0]
    const last = this.samples[this.samples.length - 1]
    if (first === undefined || t - first.t <= 0) return 0
    return Math.max(0, (last.total - first.total) * 1000 / (t - first.t))
  }

  /** Keep one sample at or before the window's start as the baseline. */
  private prune (t: number): void {
    while (this.samples.length > 1 && this.samples[1].t <= t - this.windowMs) this.samples.shift()
    while (this.samples.length > MAX_RATE_SAMPLES + 3) this.samples.shift()
  }
}

/** What every view of a download needs, kept from the leech events. */
class Tally {
  name = ''
  size = 0
  have = 0
  sources = 0
  private readonly meter = new RateMeter()
  /** Peers that delivered a piece lately, by id: "peers in use". */
  private readonly recent = new Map<string, number>()

  constructor (private readonly now: Clock) {}

  on (e: LeechEvent): void {
    const t = this.now()
    switch (e.event) {
      case 'start':
        this.size = e.size; this.name = e.name
        this.have = Math.min(e.size, e.present * e.blockSize)
        this.meter.record(t, this.have)
        return
      case 'peers': this.sources = e.sources; return
      case 'peer-dropped': this.sources = Math.max(0, this.sources - 1); this.recent.delete(e.peer); return
      case 'piece':
        this.have = Math.min(this.size, this.have + e.bytes)
        this.meter.record(t, this.have)
        this.recent.delete(e.peer)
        this.recent.set(e.peer, t)
        if (this.recent.size > MAX_TRACKED_PEERS) this.recent.delete(this.recent.keys().next().value as string)
        return
      case 'piece-failed': case 'hashes': case 'done': case 'refetch': return
    }
  }

  get percent (): number { return this.size === 0 ? 100 : 100 * this.have / this.size }
  rate (): number { return this.meter.rate(this.now()) }
  eta (): number {
    const r = this.rate()
    return this.have >= this.size ? 0 : r > 0 ? (this.size - this.have) / r : NaN
  }

  /** Peers that delivered within the rate window (the map is in delivery order, oldest first). */
  inUse (): number {
    const since = this.now() - RATE_WINDOW_MS
    for (const [peer, t] of this.recent) {
      if (t >= since) break
      this.recent.delete(peer)
    }
    return this.recent.size
  }

  /** "42.0%  1.20 GiB / 3.00 GiB  85.3 MiB/s  ETA 21s  peers 3/5" */
  stats (): string {
    // (a peer that asked us, and so became a source, delivers without a discovery round counting it: never "3/2")
    const inUse = this.inUse()
    return `${this.percent.toFixed(1).padStart(5)}%  ${bytes(this.have)} / ${bytes(this.size)}  ${bytes(Math.round(this.rate()))}/s  ETA ${duration(this.eta())}  peers ${inUse}/${Math.max(inUse, this.sources)}`
  }
}

/** What `get` shows while it runs, whatever the mode. */
export interface ProgressView {
  operator: () => MonoTypeOperatorFunction<LeechEvent>
  /** The verified file: the closing summary (or the `done` event). */
  finish: (done: LeechEvent & { event: 'done' }) => void
  /** The download failed or was interrupted: stop any live display (or print the `error` event). */
  fail: (err: unknown) => void
}

/** The view for `mode` on `stream` (stdout). */
export function progress (mode: ProgressMode, stream: NodeJS.WritableStream, opts: ProgressOptions = {}): ProgressView {
  const now = opts.now ?? Date.now
  return mode === 'json' ? new JsonProgress(stream, now, opts.query) : mode === 'tty' ? new TtyProgress(stream, now, opts.fps ?? TTY_FPS) : new LinesProgress(stream, now)
}

/**
 * NDJSON events: the leech events as they come (less the bulky `hashes` and the per-piece ones),
 * a `progress` event at most every 250 ms, `done`, or `error` with its code and message.
 */
/**
 * `--json`: the library's public download events (`downloadEvents`, the same stream `createNode`'s
 * `leech` returns), one per line; `error` is printed when the download fails.
 */
export class JsonProgress implements ProgressView {
  private readonly scheduler: SchedulerLike
  constructor (private readonly stream: NodeJS.WritableStream, now: Clock, private readonly query?: string) {
    // the events only read the time: a clock is all the scheduler has to give
    this.scheduler = { now, schedule: asyncScheduler.schedule.bind(asyncScheduler) }
  }

  private json (o: unknown): void { this.stream.write(JSON.stringify(o) + '\n') }

  operator (): MonoTypeOperatorFunction<LeechEvent> {
    return (source) => new Observable<LeechEvent>((sub) => {
      const events = new Subject<LeechEvent>()
      // `done` is printed by finish(), after the caller's own checks; errors by fail()
      const printing = events.pipe(downloadEvents({ progressIntervalMs: JSON_PROGRESS_EVERY_MS, scheduler: this.scheduler })).subscribe({
        next: (e) => { if (e.event !== 'done') this.json(e) },
        error: () => {},
      })
      const s = source.subscribe({
        next: (e) => { events.next(e); sub.next(e) },
        error: (err) => { events.error(err); sub.error(err) },
        complete: () => { events.complete(); sub.complete() },
      })
      return () => { s.unsubscribe(); printing.unsubscribe() }
    })
  }

  finish (done: LeechEvent & { event: 'done' }): void { this.json(done) }
  fail (err: unknown): void { this.json({ event: 'error', code: errorCode(err), message: (err as Error).message, ...(this.query === undefined ? {} : { query: this.query }) }) }
}

/** The closing summary of the human views. */
function summary (done: LeechEvent & { event: 'done' }, secs: number): string {
  const rate = secs > 0 ? done.downloaded / secs : 0
  return `${printable(done.name)}: ${bytes(done.bytes)} verified, sha256 ${done.sha256}\n` +
    `  → ${printable(done.path)} (${bytes(done.downloaded)} fetched in ${secs.toFixed(2)} s, ${bytes(Math.round(rate))}/s)\n`
}

/** Not a terminal: a plain line every 5 s (pieces landing or not) and at 25/50/75 %; never an escape code. */
export class LinesProgress implements ProgressView {
  private readonly tally: Tally
  private readonly t0: number
  private last: number
  private milestone = 0
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly stream: NodeJS.WritableStream, private readonly now: Clock) {
    this.tally = new Tally(now)
    this.t0 = now()
    this.last = this.t0
  }

  operator (): MonoTypeOperatorFunction<LeechEvent> { return tap((e) => this.on(e)) }

  private on (e: LeechEvent): void {
    this.tally.on(e)
    if (e.event === 'refetch') { this.stream.write(`${printable(this.tally.name)}: ${e.pieces} stored piece(s) changed on disk since they were verified: fetching them again\n`); return }
    if (e.event === 'start') {
      this.stream.write(`${printable(e.name)}: ${bytes(e.size)} in ${e.pieces} piece(s)${e.present > 0 ? `, ${e.present} already here` : ''}\n`)
      while (this.milestone < LINES_MILESTONES.length && this.tally.percent >= LINES_MILESTONES[this.milestone]) this.milestone++
      // (a line every 5 s also while nothing lands: a stalled download says so, at 0 B/s)
      if (this.timer === null) {
        this.timer = setInterval(() => { if (this.now() - this.last >= LINES_EVERY_MS) this.line() }, LINES_EVERY_MS)
        this.timer.unref()
      }
      return
    }
    if (e.event !== 'piece') return
    let crossed = false
    while (this.milestone < LINES_MILESTONES.length && this.tally.percent >= LINES_MILESTONES[this.milestone]) { this.milestone++; crossed = true }
    if (crossed || this.now() - this.last >= LINES_EVERY_MS) this.line()
  }

  private line (): void {
    this.last = this.now()
    this.stream.write(`${printable(this.tally.name)}  ${this.tally.stats()}\n`)
  }

  private stop (): void {
    if (this.timer !== null) { clearInterval(this.timer); this.timer = null }
  }

  finish (done: LeechEvent & { event: 'done' }): void { this.stop(); this.stream.write(summary(done, (this.now() - this.t0) / 1000)) }
  fail (): void { this.stop() }
}

/**
 * A terminal: a cli-progress bar redrawn a few times a second, with percent, bytes, rate over the
 * last seconds, ETA and peers in use. Log lines (stderr, same terminal) clear it first and it is
 * redrawn after them; any end (done, error, signal) stops it and clears its line.
 */
export class TtyProgress implements ProgressView {
  private readonly tally: Tally
  private readonly t0: number
  private readonly bar: SingleBar
  private started = false

  constructor (private readonly stream: NodeJS.WritableStream, private readonly now: Clock, fps: number) {
    this.tally = new Tally(now)
    this.t0 = now()
    const options: BarOptions = {
      stream: stream as NodeJS.WritableStream & { isTTY: boolean },
      fps,
      format: (o, params) => this.line(o, params.maxWidth),
      barsize: MAX_BAR_WIDTH, // the widest; each line draws what fits
      barCompleteChar: '█',
      barIncompleteChar: '░',
      // nothing that would outlive a killed process: keep the cursor and line wrapping as they are
      hideCursor: false,
      linewrap: true,
      // a redraw after a log line must not wait for the bar to change
      forceRedraw: true,
      clearOnComplete: true,
      synchronousUpdate: false,
      gracefulExit: false,
    }
    this.bar = new SingleBar(options)
  }

  /** The bar's text for a terminal `width` columns wide: the numbers always, name and bar as room allows. */
  private line (o: BarOptions, width: number): string {
    const s = this.tally
    const stats = s.stats()
    const room = width - 1 - stats.length - 2
    const name = clip(printable(s.name), Math.min(NAME_WIDTH, Math.max(8, room - MIN_BAR_WIDTH - 1)))
    const size = Math.min(MAX_BAR_WIDTH, room - name.length - 1)
    const bar = size >= MIN_BAR_WIDTH ? ' ' + Format.BarFormat(Math.min(1, s.percent / 100), { ...o, barsize: size }) : ''
    return clip(`${name}${bar} ${stats}`, Math.max(1, width - 1))
  }

  operator (): MonoTypeOperatorFunction<LeechEvent> { return tap((e) => this.on(e)) }

  private on (e: LeechEvent): void {
    this.tally.on(e)
    if (e.event === 'start' && this.started) {
      this.bar.update(this.tally.have) // (again, after a refetch: what is still held)
    } else if (e.event === 'start') {
      this.bar.start(Math.max(1, e.size), this.tally.have)
      this.started = true
      aroundLogWrites({ before: () => this.beforeLog(), after: () => this.afterLog() })
    } else if (e.event === 'piece' && this.started) {
      this.bar.update(this.tally.have)
    }
  }

  /** Draw now (the bar's own timer does it `fps` times a second). */
  draw (): void { if (this.started) this.bar.render() }

  /** A log line is about to be written: clear the bar's line. */
  beforeLog (): void {
    if (!this.started) return
    readline.cursorTo(this.stream, 0)
    readline.clearLine(this.stream, 0)
  }

  /** A log line was written: the bar goes on the next line; move the saved cursor there too. */
  afterLog (): void {
    if (!this.started) return
    this.stream.write('\x1b7')
    this.bar.render()
  }

  private stop (): void {
    if (!this.started) return
    this.started = false
    aroundLogWrites(null)
    this.bar.stop()
  }

  finish (done: LeechEvent & { event: 'done' }): void {
    this.stop()
    this.stream.write(summary(done, (this.now() - this.t0) / 1000))
  }

  fail (): void { this.stop() }
}

/** What a sharing peer can report cheaply, read once a second. */
export interface ServingStats { files: number, connections: number, uploaded: number }

/**
 * What `peer` shows while it serves: a live status line on a terminal, a plain line when something
 * changed (at most every 5 s) otherwise, or a `serving` NDJSON event every 2 s.
 */
export class ServingView {
  private readonly meter = new RateMeter()
  private last = -Infinity
  private lastText = ''
  private live = false
  private shown = ''

  constructor (private readonly mode: ProgressMode, private readonly stream: NodeJS.WritableStream, private readonly now: Clock = Date.now) {}

  tick (s: ServingStats): void {
    const t = this.now()
    this.meter.record(t, s.uploaded)
    const rate = Math.round(this.meter.rate(t))
    if (this.mode === 'json') {
      if (t - this.last < SERVING_JSON_EVERY_MS) return
      this.last = t
      this.stream.write(JSON.stringify({ event: 'serving', files: s.files, connections: s.connections, uploaded: s.uploaded, rate }) + '\n')
      return
    }
    const text = `serving ${s.files} file(s) to ${s.connections} connection(s): ${bytes(s.uploaded)} sent`
    if (this.mode === 'tty') {
      if (!this.live) { this.live = true; aroundLogWrites({ before: () => this.clear(), after: () => this.draw() }) }
      this.shown = `${text}, ${bytes(rate)}/s`
      this.draw()
      return
    }
    if (text === this.lastText || t - this.last < SERVING_LINES_EVERY_MS) return
    this.last = t
    this.lastText = text
    this.stream.write(`${text}, ${bytes(rate)}/s\n`)
  }

  private draw (): void {
    const width = (this.stream as { columns?: number }).columns || 80 // (a terminal with no size says 0)
    this.stream.write(`\r${clip(this.shown, width - 1)}\x1b[K`)
  }

  private clear (): void { this.stream.write('\r\x1b[K') }

  /** A line of its own (a file shared or withdrawn later): above the live line on a terminal. */
  note (line: string): void {
    if (this.mode === 'json') return
    if (this.live) this.clear()
    this.stream.write(line + '\n')
    if (this.live) this.draw()
  }

  /** Clear the live line (terminal) before the process says goodbye. */
  stop (): void {
    if (!this.live) return
    this.live = false
    aroundLogWrites(null)
    this.clear()
  }
}
