import { Writable } from 'node:stream'
import { Subject } from 'rxjs'
import { NotFoundError } from '../../src/errors'
import type { LeechEvent } from '../../src/peer/leech'
import { JSON_PROGRESS_EVERY_MS, LINES_EVERY_MS, progress, RateMeter, ServingView, TtyProgress, type ProgressMode } from '../../src/cli/progress'

/** A stream that keeps what is written, each write with the fake time it happened at. */
class Capture extends Writable {
  readonly writes: { t: number, s: string }[] = []
  isTTY = false
  columns = 120
  constructor (private readonly clock: { t: number }) { super() }
  override _write (chunk: Buffer, _enc: string, cb: () => void): void { this.writes.push({ t: this.clock.t, s: chunk.toString() }); cb() }
  get text (): string { return this.writes.map((w) => w.s).join('') }
}

const MiB = 1024 * 1024
const start = (size: number, name = 'big.iso', present = 0): LeechEvent => ({ event: 'start', fileId: 'ab'.repeat(32), name, size, blockSize: MiB, pieces: Math.ceil(size / MiB), present })
const piece = (index: number, peer = 'p1', bytes = MiB): LeechEvent => ({ event: 'piece', index, bytes, peer })
const done = (size: number, name = 'big.iso'): LeechEvent & { event: 'done' } => ({ event: 'done', fileId: 'ab'.repeat(32), name, path: `/tmp/${name}`, bytes: size, sha256: 'ab'.repeat(32), downloaded: size })

/** Every view made by a test is stopped after it, pass or fail (a terminal bar has a redraw timer). */
const views: ReturnType<typeof progress>[] = []
afterEach(() => { for (const v of views.splice(0)) v.fail(new Error('test over')) })

/** Feed `events` to a view, the fake clock moving `stepMs` before each. */
function run (mode: ProgressMode, events: LeechEvent[], stepMs: number, tty = false): { out: Capture, clock: { t: number }, view: ReturnType<typeof progress> } {
  const clock = { t: 1_000_000 }
  const out = new Capture(clock)
  out.isTTY = tty
  const view = progress(mode, out, { now: () => clock.t, fps: 1 })
  views.push(view)
  // one download: one subscription that sees every event
  const source = new Subject<LeechEvent>()
  source.pipe(view.operator()).subscribe({ error: () => {} })
  for (const e of events) {
    clock.t += stepMs
    source.next(e)
  }
  return { out, clock, view }
}

describe('RateMeter', () => {
  it('measures over the last window, not since the start', () => {
    const m = new RateMeter(5000)
    // 10 s at 1 MB/s, then 5 s at 10 MB/s: the rate is the recent one
    let total = 0
    for (let t = 0; t <= 10_000; t += 100) { total += 100_000; m.record(t, total) }
    for (let t = 10_100; t <= 15_000; t += 100) { total += 1_000_000; m.record(t, total) }
    expect(m.rate(15_000)).toBeGreaterThan(9e6)
    expect(m.rate(15_000)).toBeLessThan(11e6)
  })

  it('falls to zero when nothing arrives for a window', () => {
    const m = new RateMeter(5000)
    for (let t = 0; t <= 2000; t += 100) m.record(t, t * 1000)
    expect(m.rate(2000)).toBeGreaterThan(0)
    expect(m.rate(2000 + 5001)).toBe(0)
  })

  it('keeps a bounded number of samples however often it is fed', () => {
    const m = new RateMeter(5000)
    for (let t = 0; t < 100_000; t++) m.record(t, t)
    expect((m as unknown as { samples: unknown[] }).samples.length).toBeLessThanOrEqual(40)
    expect(m.rate(100_000)).toBeCloseTo(1000, -1)
  })
})

describe('get --json', () => {
  it('emits progress at most once every 250 ms (≤ 4 a second) however fast pieces land', () => {
    const events = [start(400 * MiB), ...Array.from({ length: 400 }, (_, i) => piece(i))]
    const { out } = run('json', events, 10) // a piece every 10 ms for 4 s
    const progressAt = out.writes.filter((w) => JSON.parse(w.s).event === 'progress').map((w) => w.t)
    expect(progressAt.length).toBeGreaterThanOrEqual(14)
    expect(progressAt.length).toBeLessThanOrEqual(17)
    for (let i = 1; i < progressAt.length; i++) expect(progressAt[i] - progressAt[i - 1]).toBeGreaterThanOrEqual(JSON_PROGRESS_EVERY_MS)
    // and in any one second, at most 4
    for (const t0 of progressAt) expect(progressAt.filter((t) => t >= t0 && t < t0 + 1000).length).toBeLessThanOrEqual(4)
  })

  it('keeps the event shapes: start as is, progress with bytes/size/percent/rate/peers', () => {
    const { out } = run('json', [start(4 * MiB), { event: 'peers', neighbours: 3, cluster: 3, sources: 2 }, piece(0), piece(1)], 300)
    const lines = out.writes.map((w) => JSON.parse(w.s) as Record<string, unknown>)
    expect(lines[0]).toMatchObject({ event: 'start', name: 'big.iso', size: 4 * MiB })
    expect(lines[1]).toMatchObject({ event: 'peers', sources: 2 })
    expect(lines[2]).toEqual({ event: 'progress', bytes: MiB, size: 4 * MiB, percent: 25, rate: expect.any(Number), peers: 2 })
    expect(lines[3]).toMatchObject({ event: 'progress', bytes: 2 * MiB, percent: 50 })
    expect(lines[3].rate as number).toBeGreaterThan(0)
  })

  it('ends with an error event carrying the code and message', () => {
    const { out, view } = run('json', [start(4 * MiB)], 10)
    view.fail(new NotFoundError('nope.iso'))
    expect(JSON.parse(out.writes.at(-1)?.s ?? '')).toEqual({ event: 'error', code: 'ERR_NOT_FOUND', message: 'no file named or with id prefix "nope.iso"' })
    view.fail(new Error('boom'))
    expect(JSON.parse(out.writes.at(-1)?.s ?? '')).toMatchObject({ event: 'error', code: 'ERR_INTERNAL', message: 'boom' })
  })
})

describe('get, not a terminal', () => {
  it('prints plain lines every 5 s and at 25/50/75 %, never an escape code', () => {
    // 100 pieces, one every 200 ms: 20 s in all
    const events = [start(100 * MiB, 'evil\x1b[2J.iso'), ...Array.from({ length: 100 }, (_, i) => piece(i))]
    const { out, view } = run('lines', events, 200)
    view.finish(done(100 * MiB, 'evil\x1b[2J.iso'))
    expect(out.text).not.toContain('\x1b')
    expect(out.text).not.toContain('\r')
    const lines = out.text.trimEnd().split('\n')
    expect(lines[0]).toBe('evil\\u001b[2J.iso: 100.0 MiB in 100 piece(s)')
    const progressLines = lines.filter((l) => / {1,2}\d+\.\d%/.test(l))
    for (const pct of ['25.0%', '50.0%', '75.0%']) expect(progressLines.some((l) => l.includes(` ${pct}`))).toBe(true)
    // every 5 s over 20 s plus the three milestones; never a line per piece
    expect(progressLines.length).toBeGreaterThanOrEqual(5)
    expect(progressLines.length).toBeLessThanOrEqual(8)
    const times = out.writes.filter((w) => /%/.test(w.s)).map((w) => w.t)
    expect(times.length).toBe(progressLines.length)
    expect(progressLines[0]).toMatch(/5\.00 MiB\/s {2}ETA \d+s {2}peers 1\/1$/)
    expect(lines.at(-2)).toBe('evil\\u001b[2J.iso: 100.0 MiB verified, sha256 ' + 'ab'.repeat(32))
    expect(lines.at(-1)).toMatch(/^ {2}→ \/tmp\/evil\\u001b\[2J\.iso \(100\.0 MiB fetched in 20\.20 s, 4\.95 MiB\/s\)$/) // 101 steps of 200 ms since the view was made
    expect(LINES_EVERY_MS).toBe(5000)
  })

  it('prints a line every 5 s while nothing lands too: a stalled download says so, at 0 B/s, until it ends', () => {
    jest.useFakeTimers()
    try {
      const { out, clock, view } = run('lines', [start(8 * MiB, 'stuck.bin'), piece(0)], 100)
      const before = out.writes.length
      for (let i = 0; i < 4; i++) { clock.t += 5000; jest.advanceTimersByTime(5000) } // 20 s, no piece
      const stalled = out.writes.slice(before).map((w) => w.s)
      expect(stalled.length).toBeGreaterThanOrEqual(3)
      expect(stalled.length).toBeLessThanOrEqual(4)
      for (const l of stalled) expect(l).toMatch(/^stuck\.bin +12\.5% .* 0 B\/s /)
      view.fail(new Error('stalled'))
      const after = out.writes.length
      clock.t += 20_000; jest.advanceTimersByTime(20_000)
      expect(out.writes.length).toBe(after)
    } finally {
      jest.useRealTimers()
    }
  })

  it('counts what a resumed download already had and says so', () => {
    const { out } = run('lines', [start(8 * MiB, 'r.bin', 4), piece(4)], 6000)
    expect(out.text).toContain('r.bin: 8.00 MiB in 8 piece(s), 4 already here\n')
    expect(out.text).toContain(' 62.5%  5.00 MiB / 8.00 MiB')
  })
})

describe('get on a terminal', () => {
  it('never shows more peers in use than sources (a peer that asked us delivers without a discovery round counting it)', () => {
    const events = [start(100 * MiB), { event: 'peers', neighbours: 1, cluster: 1, sources: 1 } as LeechEvent,
      ...Array.from({ length: 9 }, (_, i) => piece(i, `p${i % 3}`))]
    const { out, view } = run('tty', events, 100, true)
    ;(view as TtyProgress).draw()
    expect(out.text.split('\x1b[1G').at(-1)).toContain('peers 3/3')
  })

  it('draws a cli-progress bar with percent, bytes, recent rate, ETA and peers in use', () => {
    const events = [start(100 * MiB), { event: 'peers', neighbours: 4, cluster: 4, sources: 3 } as LeechEvent,
      ...Array.from({ length: 40 }, (_, i) => piece(i, i % 2 === 0 ? 'p1' : 'p2'))]
    const { out, view } = run('tty', events, 100, true) // 10 MiB/s
    ;(view as TtyProgress).draw()
    const last = out.text.split('\x1b[1G').at(-1) ?? ''
    expect(last).toContain('big.iso ')
    expect(last).toContain(' ' + '█'.repeat(12) + '░'.repeat(18) + ' ') // 40 % of a 30-wide bar (120 columns)
    // 40 MiB landed between the start (t = 100 ms) and now (4200 ms): 9.76 MiB/s, 60 MiB left: 7 s
    expect(last).toContain(' 40.0%  40.0 MiB / 100.0 MiB  9.76 MiB/s  ETA 7s  peers 2/3')
    view.finish(done(100 * MiB))
    // the bar's line is cleared before the summary, which is plain
    const end = out.text.lastIndexOf('\x1b[2K')
    expect(end).toBeGreaterThan(0)
    expect(out.text.slice(end)).toMatch(/big\.iso: 100\.0 MiB verified/)
  })

  it('fits the terminal width', () => {
    const { out, view } = run('tty', [start(100 * MiB, 'a-very-long-file-name-that-goes-on-and-on.iso'), piece(0)], 100, true)
    out.columns = 50
    ;(view as TtyProgress).draw()
    const last = out.text.split('\x1b[1G').at(-1) ?? ''
    expect(last.replace(/\x1b\[\d*K/g, '').length).toBeLessThanOrEqual(49)
    // on 80 columns the numbers all show; the bar gets what is left
    out.columns = 80
    ;(view as TtyProgress).draw()
    const at80 = (out.text.split('\x1b[1G').at(-1) ?? '').replace(/\x1b\[\d*K/g, '')
    expect(at80.length).toBeLessThanOrEqual(79)
    expect(at80).toMatch(/^a-very-… ░{8} {3}1\.0%  1\.00 MiB \/ 100\.0 MiB  .*peers 1\/1$/)
    view.fail(new Error('x'))
  })

  it('clears its line before a log line and redraws after it; an error stops it for good', () => {
    const { out, view } = run('tty', [start(10 * MiB), piece(0)], 100, true)
    const tty = view as TtyProgress
    const before = out.writes.length
    tty.beforeLog()
    expect(out.writes.slice(before).map((w) => w.s).join('')).toBe('\x1b[1G\x1b[2K')
    const mid = out.writes.length
    tty.afterLog()
    expect(out.writes.slice(mid).map((w) => w.s).join('')).toContain('10.0%')
    view.fail(new Error('x'))
    const after = out.writes.length
    tty.beforeLog(); tty.afterLog(); tty.draw()
    expect(out.writes.length).toBe(after)
  })
})

describe('peer status', () => {
  const tick = (mode: ProgressMode, stats: { files: number, connections: number, uploaded: number }[], stepMs: number, tty = false): Capture => {
    const clock = { t: 0 }
    const out = new Capture(clock)
    out.isTTY = tty
    const v = new ServingView(mode, out, () => clock.t)
    for (const s of stats) { clock.t += stepMs; v.tick(s) }
    v.stop()
    return out
  }

  it('--json: a serving event every 2 s with uploaded bytes and the recent rate', () => {
    const stats = Array.from({ length: 10 }, (_, i) => ({ files: 2, connections: 1, uploaded: (i + 1) * MiB }))
    const out = tick('json', stats, 1000)
    const events = out.writes.map((w) => JSON.parse(w.s) as Record<string, number>)
    expect(events).toHaveLength(5)
    expect(events[0]).toEqual({ event: 'serving', files: 2, connections: 1, uploaded: MiB, rate: 0 })
    expect(events[4]).toMatchObject({ uploaded: 9 * MiB })
    expect(events[4].rate).toBeCloseTo(MiB, -3)
  })

  it('not a terminal: a plain line only when something changed, at most every 5 s', () => {
    const idle = Array.from({ length: 30 }, () => ({ files: 2, connections: 0, uploaded: 0 }))
    const busy = Array.from({ length: 12 }, (_, i) => ({ files: 2, connections: 1, uploaded: (i + 1) * MiB }))
    const out = tick('lines', [...idle, ...busy, ...idle.map(() => busy[11])], 1000)
    const lines = out.text.trimEnd().split('\n')
    expect(out.text).not.toContain('\x1b')
    expect(lines[0]).toBe('serving 2 file(s) to 0 connection(s): 0 B sent, 0 B/s')
    expect(lines.length).toBeGreaterThanOrEqual(3)
    expect(lines.length).toBeLessThanOrEqual(5) // idle stretches print nothing new
    expect(lines.at(-1)).toMatch(/^serving 2 file\(s\) to 1 connection\(s\): 12\.0 MiB sent, /)
  })

  it('a terminal: one live line, redrawn in place and cleared on stop', () => {
    const out = tick('tty', [{ files: 1, connections: 0, uploaded: 0 }, { files: 1, connections: 2, uploaded: 5 * MiB }], 1000, true)
    expect(out.writes.map((w) => w.s)).toEqual([
      '\rserving 1 file(s) to 0 connection(s): 0 B sent, 0 B/s\x1b[K',
      '\rserving 1 file(s) to 2 connection(s): 5.00 MiB sent, 5.00 MiB/s\x1b[K',
      '\r\x1b[K',
    ])
  })
})
