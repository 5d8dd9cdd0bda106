import { RAREST_FIRST_AGE_MS, RAREST_FIRST_COPIES } from '../../src/limits'
import type { PeerRequest } from '../../src/protocol/messages'
import { busyReply, type Outgoing } from '../../src/peer/serve'
import { RemoteError } from '../../src/errors'
import { SimNetwork, type SimHost } from '../../src/sim/network'
import { SimScheduler } from '../../src/sim/scheduler'

const BLOCK = 100_000
const HASH = 'ab'.repeat(32)
const piece = (m: PeerRequest): Outgoing => m.type === 'leech'
  ? { msg: { type: 'piece', req: m.req, pieceSize: BLOCK, offset: m.offset, totalPieces: 8, clusterName: m.hash }, payload: { source: { size: 8 * BLOCK, view: () => [] }, offset: m.offset, length: BLOCK } }
  : { msg: { type: 'error', req: m.req, code: 'BAD_REQUEST', message: 'pieces only' } }

describe('SimNetwork uplink', () => {
  // 1 MB/s: a 100 kB piece leaves in 100 ms; latency 1 ms each way
  const setup = (): { scheduler: SimScheduler, ask: (from: string, i: number, copies: number | undefined, atMs: number) => Promise<number> } => {
    const scheduler = new SimScheduler()
    const net = new SimNetwork({ scheduler, latencyMs: 1, random: () => 0.5 })
    const server = net.addHost('10.0.0.1', { upload: 1e6, download: Infinity })
    server.serve = piece
    const ask = (from: string, i: number, copies: number | undefined, atMs: number): Promise<number> => {
      const h = net.host(from) ?? net.addHost(from, { upload: 1e6, download: Infinity })
      const req = { type: 'leech' as const, hash: HASH, size: 8 * BLOCK, offset: i * BLOCK, blockSize: BLOCK, pieces: 8, ...(copies === undefined ? {} : { copies }) }
      return new Promise((resolve, reject) => {
        // (the time is read when the piece lands, not when the promise settles: after the run)
        scheduler.at(atMs, () => { net.link(h, { nodeId: from, host: '10.0.0.1', port: 1 }).request(req).subscribe({ next: () => resolve(scheduler.now()), error: reject }) })
      })
    }
    return { scheduler, ask }
  }

  it('sends one piece at a time, the one with the fewest copies first, then first come first served', async () => {
    const { scheduler, ask } = setup()
    const first = ask('10.0.0.2', 0, 5, 0) // leaves at 1 ms, lands at 102
    const common = ask('10.0.0.3', 1, 5, 10) // queued at 11 ms
    const alsoCommon = ask('10.0.0.4', 2, 5, 20)
    const rare = ask('10.0.0.5', 3, 1, 30) // queued last, leaves next (at 101 ms)
    scheduler.run()
    expect(await first).toBeCloseTo(102)
    expect(await rare).toBeCloseTo(202)
    expect(await common).toBeCloseTo(302)
    expect(await alsoCommon).toBeCloseTo(402)
  })

  it('a waiting piece moves up one copy per RAREST_FIRST_AGE_MS waited (none starves); copies count up to RAREST_FIRST_COPIES; a request without copies counts as common', async () => {
    expect([RAREST_FIRST_AGE_MS, RAREST_FIRST_COPIES]).toEqual([25, 8]) // the arithmetic below
    const { scheduler, ask } = setup()
    const first = ask('10.0.0.2', 0, 5, 0)
    // 12 copies count as 8; at 101 ms, waited 100 ms: 8 - 100/25 = 4, before 6 copies waited 20 ms
    // (6 - 0.8 = 5.2) and one that says nothing (counted 8) waited 80 ms (8 - 3.2 = 4.8)
    const old = ask('10.0.0.3', 1, 12, 0)
    const newer = ask('10.0.0.4', 2, 6, 80)
    const unsaid = ask('10.0.0.5', 3, undefined, 20)
    // at 201 ms: 8 - 180/25 = 0.8 before 6 - 120/25 = 1.2
    scheduler.run()
    expect(await first).toBeCloseTo(102)
    expect(await old).toBeCloseTo(202)
    expect(await unsaid).toBeCloseTo(302)
    expect(await newer).toBeCloseTo(402)
  })
})

describe('SimNetwork replies', () => {
  it('a BUSY reaches the asker as a RemoteError with the wait it asks (retryMs), after a round trip', async () => {
    const scheduler = new SimScheduler()
    const net = new SimNetwork({ scheduler, latencyMs: 1, random: () => 0.5 })
    const server = net.addHost('10.0.0.1', { upload: 1e6, download: Infinity })
    server.serve = (m) => ({ msg: busyReply(m.req, 'upload queue full', 40) })
    const asker = net.addHost('10.0.0.2', { upload: 1e6, download: Infinity })
    const req = { type: 'leech' as const, hash: HASH, size: 8 * BLOCK, offset: 0, blockSize: BLOCK, pieces: 8 }
    let failed: unknown
    let at = -1
    net.link(asker, { nodeId: 'n', host: '10.0.0.1', port: 1 }).request(req).subscribe({ error: (e: unknown) => { failed = e; at = scheduler.now() } })
    scheduler.run()
    expect(failed).toBeInstanceOf(RemoteError)
    expect(failed).toMatchObject({ remoteCode: 'BUSY', retryMs: 40 })
    expect(at).toBe(2)
    expect(net.stats.errors).toEqual({ BUSY: 1 })
  })
})

describe('SimNetwork links: resets, cancels, bytes on their way, partitions', () => {
  // latency 1 ms; the server sends at 1 MB/s: a 100 kB piece leaves in 100 ms
  const setup = (): { scheduler: SimScheduler, net: SimNetwork, server: SimHost, asker: SimHost, served: () => number, ask: () => { frames: number, error: unknown, at: number, cancel: () => void } } => {
    const scheduler = new SimScheduler()
    const net = new SimNetwork({ scheduler, latencyMs: 1, random: () => 0.5 })
    const server = net.addHost('10.0.0.1', { upload: 1e6, download: Infinity })
    let served = 0
    server.serve = (m) => { served++; return piece(m) }
    const asker = net.addHost('10.0.0.2', { upload: 1e6, download: Infinity })
    const req = { type: 'leech' as const, hash: HASH, size: 8 * BLOCK, offset: 0, blockSize: BLOCK, pieces: 8 }
    const ask = (): { frames: number, error: unknown, at: number, cancel: () => void } => {
      const r = { frames: 0, error: undefined as unknown, at: -1, cancel: () => {} }
      const sub = net.link(asker, { nodeId: 'n', host: '10.0.0.1', port: 1 }).request(req).subscribe({
        next: () => { r.frames++; r.at = scheduler.now() },
        error: (e: unknown) => { r.error = e; r.at = scheduler.now() },
      })
      r.cancel = () => sub.unsubscribe()
      return r
    }
    return { scheduler, net, server, asker, served: () => served, ask }
  }

  it('a request to a crashed host fails with a reset after the latency; one whose host crashes while its piece is on the way fails when it would have landed', () => {
    const { scheduler, net, ask } = setup()
    net.crash('10.0.0.1')
    const down = ask()
    scheduler.run()
    expect(down.frames).toBe(0)
    expect(String(down.error)).toMatch(/connection reset/)
    expect(down.at).toBe(1)
    net.restart('10.0.0.1')
    const t0 = scheduler.now()
    const lost = ask()
    scheduler.at(50, () => net.crash('10.0.0.1')) // mid-send
    scheduler.run()
    expect(lost.frames).toBe(0)
    expect(String(lost.error)).toMatch(/connection reset/)
    expect(lost.at - t0).toBeCloseTo(102) // sent at 1 ms, its last byte out at 101, landing at 102
  })

  it('an asker that stops waiting before its request arrives is never served; one that stops while its piece is on the way is not told, but the bytes still cross', () => {
    const { scheduler, ask, served, server, asker } = setup()
    const early = ask()
    early.cancel() // at 0: delivery was due at 1
    scheduler.run()
    expect(served()).toBe(0)
    expect(early.frames + (early.error === undefined ? 0 : 1)).toBe(0)
    const late = ask()
    scheduler.at(10, () => late.cancel()) // the piece is leaving the uplink
    scheduler.run()
    expect(served()).toBe(1)
    expect(late.frames).toBe(0)
    expect(late.error).toBeUndefined()
    expect(server.uploaded).toBe(BLOCK)
    expect(asker.downloaded).toBe(BLOCK)
  })

  it('across a partition a request waits, and crosses when it heals; an asker that gave up meanwhile is never served', () => {
    const { scheduler, net, ask, served } = setup()
    net.partition(['10.0.0.2'])
    const waits = ask()
    const gaveUp = ask()
    scheduler.at(5, () => gaveUp.cancel())
    scheduler.at(300, () => net.heal())
    scheduler.run()
    expect(served()).toBe(1)
    expect(gaveUp.frames).toBe(0)
    expect(waits.frames).toBe(1)
    expect(waits.at).toBeCloseTo(300 + 1 + 100 + 1) // delivered a latency after the heal, then sent and landed
  })
})

describe('SimNetwork capped downlink', () => {
  it('takes frames in the order their first bytes arrive: a near sender\'s piece is not queued behind a far one sent just before it', () => {
    const scheduler = new SimScheduler()
    const net = new SimNetwork({ scheduler, latencyMs: 1, maxLatencyMs: 20, latencySalt: 7, random: () => 0.5 })
    // the asker downloads at 1 MB/s: a 100 kB piece takes 100 ms of its downlink; senders have no cap
    const asker = net.addHost('10.0.0.1', { upload: 1e6, download: 1e6 })
    const senders = Array.from({ length: 12 }, (_, i) => {
      const h = net.addHost(`10.0.2.${i + 1}`, { upload: Infinity, download: Infinity })
      h.serve = piece
      return h
    }).sort((a, b) => net.latency(asker, a) - net.latency(asker, b))
    const near = senders[0]
    const far = senders[senders.length - 1]
    const latNear = net.latency(asker, near)
    const latFar = net.latency(asker, far)
    expect(latFar - latNear).toBeGreaterThan(4) // (the draw: the test needs a spread)
    const landed: Record<string, number> = {}
    const ask = (h: SimHost, atMs: number): void => {
      const req = { type: 'leech' as const, hash: HASH, size: 8 * BLOCK, offset: 0, blockSize: BLOCK, pieces: 8 }
      scheduler.at(atMs, () => { net.link(asker, { nodeId: h.host, host: h.host, port: 1 }).request(req).subscribe({ next: () => { landed[h.host] = scheduler.now() } }) })
    }
    // each piece leaves its sender as soon as it is asked for
    ask(far, 0)
    // the far piece leaves at latFar; the near one 1 ms later, and its first byte arrives first
    ask(near, latFar + 1 - latNear)
    scheduler.run()
    const nearSent = latFar + 1
    expect(landed[near.host]).toBeCloseTo(nearSent + latNear + 100)
    expect(landed[far.host]).toBeCloseTo(nearSent + latNear + 200)
  })
})

describe('SimNetwork per-link latency', () => {
  const ping = (net: SimNetwork, scheduler: SimScheduler, from: string, to: string): number => {
    const t0 = scheduler.now()
    let at = -1
    net.link(net.host(from) as SimHost, { nodeId: to, host: to, port: 1 }).request({ type: 'probe', fileId: HASH }).subscribe({ next: () => { at = scheduler.now() } })
    scheduler.run()
    return at - t0
  }
  const hosts = (net: SimNetwork): string[] => Array.from({ length: 12 }, (_, i) => {
    const h = net.addHost(`10.0.1.${i + 1}`, { upload: 1e6, download: Infinity })
    h.serve = (m) => ({ msg: { type: 'have', req: m.req, fileId: HASH, totalPieces: 8 } })
    return h.host
  })

  it('with maxLatencyMs, each pair of hosts has its own latency in the range, the same both ways and for the whole run; a request takes its round trip', () => {
    const scheduler = new SimScheduler()
    const net = new SimNetwork({ scheduler, latencyMs: 2, maxLatencyMs: 30, latencySalt: 7, random: () => 0.5 })
    const hs = hosts(net)
    const seen = new Set<number>()
    for (let i = 0; i < hs.length; i++) {
      for (let j = i + 1; j < hs.length; j++) {
        const a = net.host(hs[i]) as SimHost
        const b = net.host(hs[j]) as SimHost
        const l = net.latency(a, b)
        expect(l).toBeGreaterThanOrEqual(2)
        expect(l).toBeLessThan(30)
        expect(net.latency(b, a)).toBe(l)
        seen.add(l)
      }
    }
    expect(seen.size).toBe(66) // every pair its own
    const [lo, hi] = [Math.min(...seen), Math.max(...seen)]
    expect(lo).toBeLessThan(8) // spread over the range, not bunched
    expect(hi).toBeGreaterThan(24)
    const a = net.host(hs[0]) as SimHost
    const b = net.host(hs[5]) as SimHost
    expect(ping(net, scheduler, hs[0], hs[5])).toBeCloseTo(2 * net.latency(a, b), 9)
    expect(ping(net, scheduler, hs[5], hs[0])).toBeCloseTo(2 * net.latency(a, b), 9)
    // another salt (another seed): other latencies
    const other = new SimNetwork({ scheduler: new SimScheduler(), latencyMs: 2, maxLatencyMs: 30, latencySalt: 8, random: () => 0.5 })
    const ohs = hosts(other)
    expect(other.latency(other.host(ohs[0]) as SimHost, other.host(ohs[5]) as SimHost)).not.toBe(net.latency(a, b))
  })

  it('datagrams (tracker traffic) take their link\'s latency too', () => {
    const scheduler = new SimScheduler()
    const net = new SimNetwork({ scheduler, latencyMs: 1, maxLatencyMs: 40, latencySalt: 3, random: () => 0.5 })
    const hs = hosts(net)
    const tracker = net.host(hs[0]) as SimHost
    const arrived: Array<[string, number]> = []
    tracker.onDatagram = (_m, from) => { arrived.push([from.address, scheduler.now()]) }
    for (const h of hs.slice(1, 6)) net.sendDatagram({ address: h, port: 1 }, { address: hs[0], port: 2 }, { type: 'connect', tx: 1, pad: new Uint8Array(32) })
    scheduler.run()
    expect(arrived).toHaveLength(5)
    for (const [from, at] of arrived) expect(at).toBe(net.latency(net.host(from) as SimHost, tracker))
    expect(new Set(arrived.map(([, at]) => at)).size).toBe(5)
  })

  it('without maxLatencyMs every link takes latencyMs', () => {
    const scheduler = new SimScheduler()
    const net = new SimNetwork({ scheduler, latencyMs: 3, random: () => 0.5 })
    const hs = hosts(net)
    expect(ping(net, scheduler, hs[0], hs[1])).toBe(6)
    expect(ping(net, scheduler, hs[3], hs[9])).toBe(6)
  })
})
