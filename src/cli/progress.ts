import { tap, type MonoTypeOperatorFunction } from 'rxjs'
import type { LeechEvent } from '../peer/leech'
import { bytes } from './format'
import { errorCode } from './exit'

type Mode = 'json' | 'tty' | 'lines'

/**
 * What `get` shows while it runs: NDJSON events (progress at most 4 per second), a live line on a
 * terminal, or a plain line every few seconds otherwise.
 */
export class Progress {
  private size = 0
  private have = 0
  private sources = 0
  private readonly t0 = Date.now()
  private lastShown = Date.now()
  private name = ''

  constructor (private readonly mode: Mode, private readonly stream: NodeJS.WritableStream) {}

  private json (o: unknown): void { this.stream.write(JSON.stringify(o) + '\n') }

  operator (): MonoTypeOperatorFunction<LeechEvent> {
    return tap((e) => this.on(e))
  }

  private on (e: LeechEvent): void {
    switch (e.event) {
      case 'start':
        this.size = e.size; this.name = e.name
        this.have = e.present * e.blockSize > e.size ? e.size : e.present * e.blockSize
        if (this.mode === 'json') this.json(e)
        return
      case 'peers':
        this.sources = e.sources
        if (this.mode === 'json') this.json(e)
        return
      case 'peer-dropped':
        this.sources = Math.max(0, this.sources - 1)
        if (this.mode === 'json') this.json(e)
        return
      case 'piece-failed':
        if (this.mode === 'json') this.json(e)
        return
      case 'hashes':
        return
      case 'piece':
        this.have += e.bytes
        this.maybeShow()
        return
      case 'done':
        return
    }
  }

  private maybeShow (): void {
    const now = Date.now()
    const every = this.mode === 'json' ? 250 : this.mode === 'tty' ? 200 : 5000
    if (now - this.lastShown < every) return
    this.lastShown = now
    const secs = (now - this.t0) / 1000
    const rate = secs > 0 ? this.have / secs : 0
    const pct = this.size === 0 ? 100 : (100 * this.have) / this.size
    const eta = rate > 0 ? (this.size - this.have) / rate : NaN
    if (this.mode === 'json') {
      this.json({ event: 'progress', bytes: this.have, size: this.size, percent: Math.round(pct * 10) / 10, rate: Math.round(rate), peers: this.sources })
      return
    }
    const line = `${this.name}  ${pct.toFixed(1).padStart(5)}%  ${bytes(this.have)} / ${bytes(this.size)}  ${bytes(rate)}/s  ETA ${Number.isFinite(eta) ? Math.ceil(eta) + 's' : '?'}  ${this.sources} peer(s)`
    this.stream.write(this.mode === 'tty' ? `\r\x1b[K${line}` : `${line}\n`)
  }

  finish (done: LeechEvent & { event: 'done' }): void {
    const secs = (Date.now() - this.t0) / 1000
    if (this.mode === 'json') { this.json(done); return }
    if (this.mode === 'tty') this.stream.write('\r\x1b[K')
    const rate = secs > 0 ? done.downloaded / secs / 1e6 : 0
    this.stream.write(`${JSON.stringify(done.name).slice(1, -1)}: ${bytes(done.bytes)} verified, sha256 ${done.sha256}\n` +
      `  → ${done.path} (${bytes(done.downloaded)} fetched in ${secs.toFixed(2)} s, ${rate.toFixed(0)} MB/s)\n`)
  }

  fail (err: unknown): void {
    if (this.mode === 'json') this.json({ event: 'error', code: errorCode(err), message: (err as Error).message })
    else if (this.mode === 'tty') this.stream.write('\r\x1b[K')
  }
}
