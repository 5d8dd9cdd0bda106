import net from 'node:net'
import dgram from 'node:dgram'
import http from 'node:http'
import { decodeDatagram, encodeDatagram } from '../../src/protocol/codec'
import { CONNECT_PAD_BYTES, type TrackerMessage, type TrackerRequest } from '../../src/protocol/messages'
import { AddressCounts } from '../../src/net/address'
import { MAX_DASHBOARD_CONNECTIONS_PER_ADDRESS } from '../../src/limits'
import { DashboardHttp, hostAllowed, hostName } from '../../src/tracker/http'
import { TrackerMetrics } from '../../src/tracker/metrics'
import { TrackerServer } from '../../src/tracker/server'
import { APP_JS } from '../../src/tracker/dashboard/assets'

const H = (c: string): string => c.repeat(64)

/** A bare UDP client: send a request, get the reply with the same tx (bounded wait). */
class Udp {
  private readonly sock = dgram.createSocket('udp4')
  private readonly waiting = new Map<number, (m: TrackerMessage) => void>()
  constructor (private readonly port: number) {
    this.sock.on('message', (buf) => {
      const m = decodeDatagram(buf) as TrackerMessage & { tx: number }
      this.waiting.get(m.tx)?.(m)
    })
  }

  send (bytes: Buffer): void { this.sock.send(bytes, this.port, '127.0.0.1') }
  ask (msg: TrackerRequest): Promise<TrackerMessage> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply to ${msg.type}`)), 5000)
      this.waiting.set(msg.tx, (m) => { clearTimeout(t); resolve(m) })
      this.send(encodeDatagram(msg))
    })
  }

  close (): void { this.sock.close() }
}

interface Res { status: number, headers: http.IncomingHttpHeaders, body: string }
function request (port: number, path: string, method = 'GET', headers: http.OutgoingHttpHeaders = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d }).on('end', () => resolve({ status: res.statusCode as number, headers: res.headers, body }))
    })
    req.on('error', reject).end()
  })
}

/** Open /events; resolves with the response once its first `state` event arrived. */
function follow (port: number): Promise<{ res: http.IncomingMessage, first: string, req: http.ClientRequest }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/events' }, (res) => {
      let buf = ''
      res.setEncoding('utf8')
      const onData = (d: string): void => {
        buf += d
        const i = buf.indexOf('event: state\ndata: ')
        const end = buf.indexOf('\n\n', i)
        if (i >= 0 && end > 0) { res.off('data', onData); resolve({ res, first: buf.slice(i + 19, end), req }) }
      }
      if (res.statusCode !== 200) { resolve({ res, first: '', req }); res.resume(); return }
      res.on('data', onData)
    })
    req.on('error', reject)
  })
}

function metricValue (text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? NaN : Number(line.slice(series.length + 1))
}

/** The status of GET /api/state on a connection of its own (not one an agent keeps alive from earlier tests); 0 when none came within `timeoutMs`. */
function freshStatus (port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api/state', agent: false, timeout: timeoutMs }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
  })
}

/** Ask with `fresh` every `pauseMs` until it is answered 200 or `giveUpMs` passed: the last status, and how long it took. */
async function untilAnswered (fresh: () => Promise<number>, giveUpMs: number, pauseMs: number): Promise<{ status: number, ms: number }> {
  const t0 = Date.now()
  let status = 0
  while (status !== 200 && Date.now() - t0 < giveUpMs) {
    status = await fresh()
    if (status !== 200) await new Promise((r) => setTimeout(r, pauseMs))
  }
  return { status, ms: Date.now() - t0 }
}

describe('tracker HTTP: dashboard routes and /metrics', () => {
  let tracker: TrackerServer
  let dash: DashboardHttp
  let metrics: TrackerMetrics
  let udp: Udp
  let port: number

  beforeAll(async () => {
    tracker = new TrackerServer({ port: 0 })
    metrics = new TrackerMetrics(tracker.registry)
    tracker.observer = metrics
    const t = await tracker.start()
    dash = new DashboardHttp({ registry: tracker.registry, metrics, maxClients: 2, probe: false, tickMs: 100 })
    port = (await dash.start()).port
    udp = new Udp(t.port)
  })
  afterAll(async () => {
    udp.close()
    await dash.close()
    await dash.close() // twice: no-op
    tracker.close()
  })

  it('/metrics counts requests by type, errors by kind, and shows nodes, files and bytes moved', async () => {
    const c = await udp.ask({ type: 'connect', tx: 1, pad: new Uint8Array(CONNECT_PAD_BYTES) })
    if (c.type !== 'connected') throw new Error(`expected connected, got ${c.type}`)
    const token = c.token
    expect((await udp.ask({ type: 'publish', tx: 2, nodeId: 'a'.repeat(32), port: 7001, name: 'big.iso', hash: H('a'), size: 10_000_000, token })).type).toBe('published')
    expect((await udp.ask({ type: 'announce', tx: 3, nodeId: 'a'.repeat(32), port: 7001, files: 1, uploaded: 123, downloaded: 456, token })).type).toBe('announced')
    // refused: have beyond the file's pieces
    expect((await udp.ask({ type: 'publish', tx: 4, nodeId: 'a'.repeat(32), port: 7001, name: 'big.iso', hash: H('a'), size: 10_000_000, have: 10_000, token })).type).toBe('error')
    // no token, and garbage: neither gets a reply big enough to wait for, so poll the counters
    udp.send(encodeDatagram({ type: 'publish', tx: 5, nodeId: 'b'.repeat(32), port: 7002, name: 'x', hash: H('b'), size: 1 }))
    udp.send(Buffer.from('not cbor at all'))
    let text = ''
    for (let i = 0; i < 100; i++) {
      text = (await request(port, '/metrics')).body
      if (metricValue(text, 'lp2p_tracker_errors_total{kind="bad_token"}') === 1 && metricValue(text, 'lp2p_tracker_errors_total{kind="malformed"}') === 1) break
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(metricValue(text, 'lp2p_tracker_requests_total{type="connect"}')).toBe(1)
    expect(metricValue(text, 'lp2p_tracker_requests_total{type="publish"}')).toBe(3)
    expect(metricValue(text, 'lp2p_tracker_requests_total{type="announce"}')).toBe(1)
    expect(metricValue(text, 'lp2p_tracker_requests_total{type="withdraw"}')).toBe(0)
    expect(metricValue(text, 'lp2p_tracker_replies_total{type="published"}')).toBe(1)
    expect(metricValue(text, 'lp2p_tracker_errors_total{kind="bad_token"}')).toBe(1)
    expect(metricValue(text, 'lp2p_tracker_errors_total{kind="malformed"}')).toBe(1)
    expect(metricValue(text, 'lp2p_tracker_errors_total{kind="refused"}')).toBe(1)
    expect(metricValue(text, 'lp2p_tracker_errors_total{kind="rate_limited"}')).toBe(0)
    expect(metricValue(text, 'lp2p_tracker_nodes')).toBe(1)
    expect(metricValue(text, 'lp2p_tracker_files')).toBe(1)
    expect(metricValue(text, 'lp2p_tracker_node_bytes{direction="uploaded"}')).toBe(123)
    expect(metricValue(text, 'lp2p_tracker_node_bytes{direction="downloaded"}')).toBe(456)
    expect(text).toContain('# TYPE lp2p_tracker_requests_total counter')
  })

  it('serves the page and assets with a strict CSP; anything else is 404, anything but GET 405', async () => {
    const page = await request(port, '/')
    expect(page.status).toBe(200)
    expect(page.headers['content-type']).toMatch(/^text\/html/)
    expect(page.headers['content-security-policy']).toMatch(/^default-src 'self'/)
    expect(page.headers['x-content-type-options']).toBe('nosniff')
    expect(page.body).toContain('<script src="/app.js" defer></script>')
    expect(page.body).not.toMatch(/<script>|\sstyle=|\son[a-z]+=/i)
    const js = await request(port, '/app.js?v=1')
    expect(js.status).toBe(200)
    expect(js.headers['content-type']).toMatch(/^text\/javascript/)
    expect((await request(port, '/app.css')).headers['content-type']).toMatch(/^text\/css/)
    expect((await request(port, '/nope')).status).toBe(404)
    expect((await request(port, '/toString')).status).toBe(404)
    const post = await request(port, '/', 'POST')
    expect(post.status).toBe(405)
    expect(post.headers.allow).toBe('GET')
    expect((await request(port, '/metrics', 'DELETE')).status).toBe(405)
  })

  it('on loopback, answers only to loopback names: another name (DNS rebinding) gets 403 and nothing else', async () => {
    for (const host of ['localhost', `localhost:${port}`, `127.0.0.1:${port}`, '[::1]:8080', 'dash.localhost']) {
      const r = await request(port, '/api/state', 'GET', { Host: host })
      expect([host, r.status]).toEqual([host, 200])
    }
    const before = metricValue((await request(port, '/metrics')).body, 'lp2p_http_requests_total{route="/api/state",status="403"}')
    for (const host of ['attacker.example', `attacker.example:${port}`, 'localhost.attacker.example', '127.0.0.1.nip.io', '[::2]', 'a:b:c']) {
      const r = await request(port, '/api/state', 'GET', { Host: host })
      expect([host, r.status]).toEqual([host, 403])
      expect(r.body).toMatch(/DNS rebinding/)
      expect(r.body).not.toContain('"nodes"')
    }
    // an event stream is refused the same way (no live client is added)
    const ev = await request(port, '/events', 'GET', { Host: 'attacker.example' })
    expect(ev.status).toBe(403)
    const after = metricValue((await request(port, '/metrics')).body, 'lp2p_http_requests_total{route="/api/state",status="403"}')
    expect(after - (Number.isNaN(before) ? 0 : before)).toBe(6)
  })

  it('hostAllowed: loopback names on a loopback address; any name on another address', () => {
    expect(hostName('LocalHost:80')).toBe('localhost')
    expect(hostName('[::1]:80')).toBe('::1')
    expect(hostName('[::1]x')).toBeNull()
    expect(hostName('')).toBeNull()
    expect(hostAllowed('localhost', '127.0.0.1')).toBe(true)
    expect(hostAllowed('127.0.0.5:9', '::1')).toBe(true)
    expect(hostAllowed(undefined, '127.0.0.1')).toBe(true)
    expect(hostAllowed('evil.example', '127.0.0.1')).toBe(false)
    expect(hostAllowed('evil.example', '::1')).toBe(false)
    expect(hostAllowed('evil.example', '0.0.0.0')).toBe(true)
    expect(hostAllowed('evil.example', '192.168.1.10')).toBe(true)
    // 127.0.0.1 written as IPv6, as a browser sends http://[::ffff:127.0.0.1]:P/
    expect(hostAllowed('[::ffff:7f00:1]:80', '127.0.0.1')).toBe(true)
    expect(hostAllowed('[::ffff:127.0.0.1]', '127.0.0.1')).toBe(true)
    expect(hostAllowed('[::ffff:a00:1]:80', '127.0.0.1')).toBe(false)
    expect(hostAllowed('127.0.0.1.evil', '127.0.0.1')).toBe(false)
  })

  it('requests that never finish their headers cannot lock the dashboard: they are cut after 5 s (checked every second), and one remote address (not loopback: every local viewer) holds at most 16 connections', async () => {
    // (the dashboard's per-address count: the 16th connection from one address is let in, the 17th not)
    const perAddress = new AddressCounts(MAX_DASHBOARD_CONNECTIONS_PER_ADDRESS)
    const opened = (addr: string, n: number): void => { for (let i = 0; i < n; i++) perAddress.add(addr) }
    opened('10.0.0.9', 15)
    expect(perAddress.allows('10.0.0.9')).toBe(true)
    opened('10.0.0.9', 1)
    expect(perAddress.allows('10.0.0.9')).toBe(false)
    opened('127.0.0.1', 99); opened('::ffff:127.0.0.1', 99)
    expect(perAddress.allows('127.0.0.1')).toBe(true)
    expect(perAddress.allows('::ffff:127.0.0.1')).toBe(true)
    const open = (): Promise<net.Socket> => new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => { s.write('GET /api/state HTTP/1.1\r\nHost: localhost\r\n'); resolve(s) })
      s.on('error', () => {})
      s.once('error', reject)
    })
    const fresh = (): Promise<number> => freshStatus(port, 2000)
    const held: net.Socket[] = []
    try {
      // more half-sent requests than the server takes at once (2 × maxClients + 16 = 20 here)
      for (let i = 0; i < 24; i++) held.push(await open())
      await new Promise((r) => setTimeout(r, 300))
      expect(await fresh()).toBe(0)
      // they are cut once their headers are overdue: the dashboard answers again within seconds (not 30)
      const { status, ms } = await untilAnswered(fresh, 12_000, 250)
      expect(status).toBe(200)
      expect(ms).toBeLessThan(9_000)
    } finally {
      for (const s of held) s.destroy()
    }
  }, 20_000)

  it('connections that sent requests and never read the answers are closed once idle (idleMs): they locked everyone out for as long as they were held', async () => {
    const own = new DashboardHttp({ registry: tracker.registry, metrics, maxClients: 2, probe: false, tickMs: 100, idleMs: 1000 })
    const ownPort = (await own.start()).port
    const held: net.Socket[] = []
    const fresh = (): Promise<number> => freshStatus(ownPort, 1000)
    try {
      // more than the server takes at once (2 × maxClients + 16 = 20), each with 200 pipelined requests, never read
      for (let i = 0; i < 24; i++) {
        const s = net.connect(ownPort, '127.0.0.1')
        s.on('error', () => {})
        s.pause()
        s.write('GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n'.repeat(200))
        held.push(s)
      }
      await new Promise((r) => setTimeout(r, 300))
      expect(await fresh()).toBe(0)
      const { status, ms } = await untilAnswered(fresh, 10_000, 200)
      expect(status).toBe(200)
      // (the server first answers what it was sent, 16 requests a connection at most)
      expect(ms).toBeLessThan(8_000)
    } finally {
      for (const s of held) s.destroy()
      await own.close()
    }
  }, 20_000)

  it('the page script never turns data into HTML', () => {
    expect(APP_JS).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/)
  })

  it('/api/state is a JSON snapshot of the registry', async () => {
    const r = await request(port, '/api/state')
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toMatch(/^application\/json/)
    const s = JSON.parse(r.body) as { files: { name: string, holders: number }[], totals: { nodes: number } }
    expect(s.files).toEqual([expect.objectContaining({ name: 'big.iso', holders: 1 })])
    expect(s.totals.nodes).toBe(1)
    // polled in a loop, it is made once a tick (100 ms here), not once a request
    const build = jest.spyOn(dash, 'snapshot')
    try {
      for (let i = 0; i < 20; i++) expect((await request(port, '/api/state')).status).toBe(200)
      const calls = build.mock.calls.length
      expect(calls).toBeLessThan(20)
      await new Promise((r) => setTimeout(r, 150))
      const after = JSON.parse((await request(port, '/api/state')).body) as { totals: { nodes: number } }
      expect(after.totals.nodes).toBe(1)
      expect(build.mock.calls.length).toBeGreaterThan(calls - 1)
    } finally { build.mockRestore() }
  })

  it('/events streams snapshots to at most maxClients browsers; the next gets 503 until one leaves', async () => {
    const a = await follow(port)
    const b = await follow(port)
    expect(a.res.statusCode).toBe(200)
    expect(a.res.headers['content-type']).toMatch(/^text\/event-stream/)
    expect(JSON.parse(a.first)).toMatchObject({ files: [expect.objectContaining({ name: 'big.iso' })] })
    const c = await follow(port)
    expect(c.res.statusCode).toBe(503)
    expect(metricValue((await request(port, '/metrics')).body, 'lp2p_dashboard_clients')).toBe(2)
    // further snapshots keep coming, on the tick
    const again = await new Promise<string>((resolve) => a.res.once('data', (d: string) => resolve(d)))
    expect(again).toContain('event: state')
    b.req.destroy()
    let d: Awaited<ReturnType<typeof follow>> | undefined
    for (let i = 0; i < 50; i++) {
      d = await follow(port)
      if (d.res.statusCode === 200) break
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(d?.res.statusCode).toBe(200)
    a.req.destroy(); d?.req.destroy()
  })
})
