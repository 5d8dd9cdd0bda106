import net from 'node:net'
import { IDLE_TIMEOUT_MS, MAX_CONNECTIONS, MAX_OUTSTANDING_PER_CONNECTION } from '../limits'
import { log } from '../log'
import { encodeFrameHead } from '../protocol/codec'
import { FrameDecoder } from '../protocol/frames'
import type { PeerRequest } from '../protocol/messages'
import type { Outgoing, Remote } from '../peer/serve'
import type { ByteBudget } from '../peer/leech'
import { take, type Subscription } from 'rxjs'
import type { Endpoint } from '../tracker/flow'
import { readPages } from '../../streams/readPages'

export interface PeerServerOptions {
  host?: string
  port?: number
  maxConnections?: number
  idleMs?: number
  maxOutstanding?: number
  /** Bytes queued in a socket before we stop answering its requests until it drains. */
  highWaterBytes?: number
  /** Called with the bytes of each piece payload sent (for counters). */
  onUpload?: (bytes: number) => void
  /** Upload cap shared by every connection: a piece goes out only when the budget grants its bytes. */
  budget?: ByteBudget
}

const REQUESTS = new Set(['find_cluster', 'get_hashes', 'probe', 'leech'])

/**
 * Serves peer requests over TCP. Each connection has its own frame decoder and request queue:
 * requests are answered in order, at most `maxOutstanding` may wait (a client that pipelines more
 * is cut off), and while the socket's send buffer is above `highWaterBytes` nothing new is
 * answered, so a slow reader costs us no memory. A bad frame closes that connection only.
 */
export class PeerServer {
  private server: net.Server | null = null
  private readonly sockets = new Set<net.Socket>()
  private readonly log = log.child({ module: 'peer-server' })

  constructor (private readonly handle: (m: PeerRequest, remote: Remote) => Outgoing, private readonly opts: PeerServerOptions = {}) {}

  start (): Promise<Endpoint> {
    const server = net.createServer({ noDelay: true }, (sock) => this.accept(sock))
    server.maxConnections = this.opts.maxConnections ?? MAX_CONNECTIONS
    this.server = server
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => {
        server.removeListener('error', reject)
        server.on('error', (err) => this.log.error({ err: err.message }, 'peer server error'))
        const a = server.address() as net.AddressInfo
        resolve({ address: a.address, port: a.port })
      })
    })
  }

  get connections (): number { return this.sockets.size }

  private accept (sock: net.Socket): void {
    const peer = `${sock.remoteAddress ?? '?'}:${sock.remotePort ?? '?'}`
    const decoder = new FrameDecoder()
    const queue: PeerRequest[] = []
    const maxOutstanding = this.opts.maxOutstanding ?? MAX_OUTSTANDING_PER_CONNECTION
    const highWater = this.opts.highWaterBytes ?? 4 * 1024 * 1024
    this.sockets.add(sock)
    sock.setTimeout(this.opts.idleMs ?? IDLE_TIMEOUT_MS, () => {
      this.log.debug({ peer }, 'idle connection closed')
      sock.destroy()
    })
    const fail = (why: string): void => {
      this.log.warn({ peer, why }, 'closing connection')
      queue.length = 0
      sock.destroy()
    }
    const remote: Remote = { host: sock.remoteAddress ?? '' }
    let waiting: Subscription | null = null // a piece waiting for upload budget
    const answer = (m: PeerRequest): void => {
      const out = this.handle(m, remote)
      if (out.payload === undefined) { sock.write(encodeFrameHead(out.msg)); return }
      const { source, offset, length } = out.payload
      sock.cork()
      sock.write(encodeFrameHead(out.msg, length))
      // the payload goes from the mapping to the socket, a chunk stream of page views
      readPages(source, offset, length).subscribe({ next: (chunk) => sock.write(chunk), error: (err) => fail(`read failed: ${(err as Error).message}`) })
      sock.uncork()
      if (out.msg.type === 'piece') this.opts.onUpload?.(length)
    }
    const pump = (): void => {
      while (waiting === null && queue.length > 0 && sock.writableLength < highWater && !sock.destroyed) {
        const m = queue.shift() as PeerRequest
        const budget = this.opts.budget
        if (budget === undefined || m.type !== 'leech') { answer(m); continue }
        // answered (and the file checked) only once the budget grants the piece's bytes; a grant
        // may come at once (inside subscribe) or later (then the pump resumes from the callback)
        let sync = true
        let granted = false
        const s = budget.take(Math.min(m.blockSize, m.size - m.offset)).pipe(take(1)).subscribe(() => {
          granted = true
          waiting = null
          if (sock.destroyed) return
          answer(m)
          if (!sync) pump()
        })
        sync = false
        if (!granted) waiting = s
      }
    }
    sock.on('drain', pump)
    sock.on('data', (chunk) => {
      try {
        for (const f of decoder.push(chunk)) {
          if (!REQUESTS.has(f.msg.type)) { fail(`unexpected ${f.msg.type} frame`); return }
          if (queue.length >= maxOutstanding) { fail(`more than ${maxOutstanding} requests outstanding`); return }
          queue.push(f.msg as PeerRequest)
        }
      } catch (err) {
        fail(`bad frame: ${(err as Error).message}`)
        return
      }
      pump()
    })
    sock.on('error', (err) => this.log.debug({ peer, err: err.message }, 'connection error'))
    sock.on('close', () => { this.sockets.delete(sock); queue.length = 0; waiting?.unsubscribe(); waiting = null })
  }

  /** Stop accepting and close every connection. Safe to call twice. */
  close (): Promise<void> {
    const server = this.server
    this.server = null
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    if (server === null) return Promise.resolve()
    return new Promise((resolve) => server.close(() => resolve()))
  }
}
