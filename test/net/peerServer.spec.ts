import { firstValueFrom, NEVER, timeout } from 'rxjs'
import { PeerConnection } from '../../src/net/peerConnection'
import { PeerServer } from '../../src/net/peerServer'
import type { PeerRequest } from '../../src/protocol/messages'
import type { Outgoing } from '../../src/peer/serve'

const BLOCK = 64 * 1024
const data = Buffer.alloc(8 * BLOCK, 1)
const handle = (m: PeerRequest): Outgoing => m.type === 'leech'
  ? { msg: { type: 'piece', req: m.req, pieceSize: BLOCK, offset: m.offset, totalPieces: 8, clusterName: m.hash }, payload: { source: { size: data.length, view: (o, l) => [data.subarray(o, o + l)] }, offset: m.offset, length: BLOCK } }
  : { msg: { type: 'error', req: m.req, code: 'BAD_REQUEST', message: 'only pieces here' } }
const ask = (c: PeerConnection, i: number): Promise<unknown> => firstValueFrom(c.request({ type: 'leech', hash: 'ab'.repeat(32), size: data.length, offset: i * BLOCK, blockSize: BLOCK, pieces: 8 }).pipe(timeout(3000)))
  .then(() => 'piece', (e: { remoteCode?: string, message: string }) => e.remoteCode ?? e.message)

describe('PeerServer upload queue', () => {
  let server: PeerServer | null = null
  const conns: PeerConnection[] = []
  afterEach(async () => { for (const c of conns.splice(0)) c.close(); await server?.close(); server = null })

  it('declines piece requests with BUSY once busyBytes are queued, at once; the queue of a closed connection stops counting', async () => {
    // an upload budget that never grants: everything accepted stays queued
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0, budget: { take: () => NEVER }, busyBytes: 2 * BLOCK })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    const answers = [0, 1, 2, 3].map((i) => ask(c, i))
    // the first two wait for budget (never granted here); the third and fourth are declined
    expect(await Promise.race([answers[2], new Promise((r) => setTimeout(() => r('no answer'), 2000))])).toBe('BUSY')
    expect(await answers[3]).toBe('BUSY')
    expect(server.queuedPieceBytes).toBe(2 * BLOCK)
    c.close()
    // a closed connection's queue no longer counts
    for (let i = 0; i < 50 && server.queuedPieceBytes > 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(server.queuedPieceBytes).toBe(0)
  })

  it('without busyBytes, queues every request (up to the outstanding limit)', async () => {
    server = new PeerServer(handle, { host: '127.0.0.1', port: 0 })
    const addr = await server.start()
    const c = new PeerConnection({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: addr.port })
    conns.push(c)
    expect(await Promise.all([0, 1, 2, 3, 4, 5].map((i) => ask(c, i)))).toEqual(Array(6).fill('piece'))
    expect(server.queuedPieceBytes).toBe(0)
  })
})
