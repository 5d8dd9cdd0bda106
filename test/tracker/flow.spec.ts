import { TestScheduler } from 'rxjs/testing'
import { Subject } from 'rxjs'
import { trackerFlow, type Inbound, type Outbound } from '../../src/tracker/flow'
import { Registry } from '../../src/tracker/registry'
import { makeToken, tokenValid } from '../../src/tracker/token'
import type { TrackerRequest } from '../../src/protocol/messages'

const H = (c: string): string => c.repeat(64)
const N = (c: string): string => c.repeat(32)
const A = { address: '10.0.0.1', port: 5000 }
const B = { address: '10.0.0.2', port: 6000 }

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

const inb = (msg: TrackerRequest, from = A): Inbound => ({ msg, from })

describe('trackerFlow', () => {
  it('publishes a file with the segmentation it chooses, and lists it', () => {
    setup().run(({ hot, expectObservable }) => {
      const reg = new Registry(undefined, 1000)
      const req$ = hot<Inbound>('-p-q-', {
        p: inb({ type: 'publish', tx: 1, nodeId: N('a'), port: 7001, name: 'big.iso', hash: H('a'), size: 3 * 1024 * 1024 * 1024 }),
        q: inb({ type: 'query_files', tx: 2 }, B),
      })
      const meta = { name: 'big.iso', hash: H('a'), size: 3 * 1024 * 1024 * 1024, blockSize: 4 * 1024 * 1024, pieces: 768 }
      expectObservable(trackerFlow(req$, { registry: reg, sweepMs: 100 }), '^----!').toBe('-P-Q-', {
        P: { msg: { type: 'published', tx: 1, meta }, to: A },
        Q: { msg: { type: 'files', tx: 2, files: [{ ...meta, holders: 1 }] }, to: B },
      } satisfies Record<string, Outbound>)
    })
  })

  it('takes a node\'s address from the datagram source, not from the message', () => {
    setup().run(({ hot, expectObservable }) => {
      const reg = new Registry(undefined, 1000)
      const req$ = hot<Inbound>('-p-n-', {
        p: inb({ type: 'publish', tx: 1, nodeId: N('a'), port: 7001, name: 'f', hash: H('b'), size: 10 }, { address: '192.0.2.7', port: 40000 }),
        n: inb({ type: 'get_nodes', tx: 2, fileId: H('b') }),
      })
      expectObservable(trackerFlow(req$, { registry: reg, sweepMs: 100 }), '^----!').toBe('-x-N-', {
        x: expect.anything(),
        N: { msg: { type: 'nodes', tx: 2, nodes: [{ nodeId: N('a'), host: '192.0.2.7', port: 7001, lastSeen: 1, files: [{ fileId: H('b'), have: 1, pieces: 1 }], fileCount: 1, uploaded: 0, downloaded: 0 }] }, to: A },
      })
    })
  })

  it('forgets a node that stops heartbeating, and asks a returning node to resync', () => {
    setup().run(({ hot, expectObservable }) => {
      const reg = new Registry(undefined, 5)
      // announce at 1 and 3; silent after; the sweep every 2 frames drops it once 5 frames have passed
      const req$ = hot<Inbound>('-p-a--n-----n-b-', {
        p: inb({ type: 'publish', tx: 1, nodeId: N('a'), port: 7001, name: 'f', hash: H('c'), size: 10 }),
        a: inb({ type: 'announce', tx: 2, nodeId: N('a'), port: 7001, files: 1, uploaded: 0, downloaded: 0 }),
        n: inb({ type: 'get_nodes', tx: 3 }, B),
        b: inb({ type: 'announce', tx: 4, nodeId: N('a'), port: 7001, files: 1, uploaded: 0, downloaded: 0 }),
      })
      expectObservable(trackerFlow(req$, { registry: reg, sweepMs: 2, heartbeatMs: 3 }), '^---------------!').toBe('-x-A--L-----E-R-', {
        x: expect.anything(),
        A: { msg: { type: 'announced', tx: 2, interval: 3, resync: false }, to: A },
        L: { msg: { type: 'nodes', tx: 3, nodes: [expect.objectContaining({ nodeId: N('a') })] }, to: B },
        E: { msg: { type: 'nodes', tx: 3, nodes: [] }, to: B },
        // the tracker lost its file list for this node: it asks for a re-publish
        R: { msg: { type: 'announced', tx: 4, interval: 3, resync: true }, to: A },
      })
    })
  })

  it('answers a bad request with an error reply and keeps serving', () => {
    setup().run(({ hot, expectObservable }) => {
      const reg = new Registry(undefined, 1000)
      const req$ = hot<Inbound>('-p-r-q-', {
        p: inb({ type: 'publish', tx: 1, nodeId: N('a'), port: 7001, name: 'f', hash: H('d'), size: 10 }),
        // another node claims the same hash with another size
        r: inb({ type: 'publish', tx: 5, nodeId: N('b'), port: 7002, name: 'f', hash: H('d'), size: 11 }, B),
        q: inb({ type: 'query_files', tx: 9 }),
      })
      const errors: string[] = []
      expectObservable(trackerFlow(req$, { registry: reg, sweepMs: 100, onError: (e) => errors.push(e.message) }), '^------!').toBe('-P-E-Q-', {
        P: expect.objectContaining({ msg: expect.objectContaining({ type: 'published' }) }),
        E: { msg: { type: 'error', tx: 5, code: 'BAD_REQUEST', message: expect.stringContaining('size') }, to: B },
        Q: { msg: { type: 'files', tx: 9, files: [expect.objectContaining({ hash: H('d'), size: 10 })] }, to: A },
      })
    })
  })

  it('forgets that a node holds a file it withdraws', () => {
    setup().run(({ hot, expectObservable }) => {
      const reg = new Registry(undefined, 1000)
      const req$ = hot<Inbound>('-p-w-n-', {
        p: inb({ type: 'publish', tx: 1, nodeId: N('a'), port: 7001, name: 'f', hash: H('e'), size: 10 }),
        w: inb({ type: 'withdraw', tx: 2, nodeId: N('a'), port: 7001, fileId: H('e') }),
        n: inb({ type: 'get_nodes', tx: 3, fileId: H('e') }, B),
      })
      expectObservable(trackerFlow(req$, { registry: reg, sweepMs: 100 }), '^------!').toBe('-x-W-N-', {
        x: expect.anything(),
        W: { msg: { type: 'withdrawn', tx: 2 }, to: A },
        N: { msg: { type: 'nodes', tx: 3, nodes: [] }, to: B },
      })
    })
  })

  it('lists each file with how many live nodes hold it', () => {
    setup().run(({ hot, expectObservable }) => {
      const reg = new Registry(undefined, 1000)
      const req$ = hot<Inbound>('-p-r-q-w-s-', {
        p: inb({ type: 'publish', tx: 1, nodeId: N('a'), port: 7001, name: 'f', hash: H('e'), size: 10 }),
        r: inb({ type: 'publish', tx: 2, nodeId: N('b'), port: 7002, name: 'f', hash: H('e'), size: 10 }, B),
        q: inb({ type: 'query_files', tx: 3 }),
        w: inb({ type: 'withdraw', tx: 4, nodeId: N('a'), port: 7001, fileId: H('e') }),
        s: inb({ type: 'query_files', tx: 5 }),
      })
      expectObservable(trackerFlow(req$, { registry: reg, sweepMs: 100 }), '^----------!').toBe('-x-x-Q-x-S-', {
        x: expect.anything(),
        Q: { msg: { type: 'files', tx: 3, files: [expect.objectContaining({ hash: H('e'), holders: 2 })] }, to: A },
        S: { msg: { type: 'files', tx: 5, files: [expect.objectContaining({ hash: H('e'), holders: 1 })] }, to: A },
      })
    })
  })

  it('forgets a node that leaves, at once; a leave from another address changes nothing', () => {
    setup().run(({ hot, expectObservable }) => {
      const reg = new Registry(undefined, 1000)
      const req$ = hot<Inbound>('-p-f-n-l-m-', {
        p: inb({ type: 'publish', tx: 1, nodeId: N('a'), port: 7001, name: 'f', hash: H('e'), size: 10 }),
        // another host claims a's id
        f: inb({ type: 'leave', tx: 2, nodeId: N('a'), port: 7001 }, B),
        n: inb({ type: 'get_nodes', tx: 3, fileId: H('e') }, B),
        l: inb({ type: 'leave', tx: 4, nodeId: N('a'), port: 7001 }),
        m: inb({ type: 'get_nodes', tx: 5 }, B),
      })
      expectObservable(trackerFlow(req$, { registry: reg, sweepMs: 100 }), '^----------!').toBe('-x-F-N-L-M-', {
        x: expect.anything(),
        F: { msg: { type: 'left', tx: 2 }, to: B },
        N: { msg: { type: 'nodes', tx: 3, nodes: [expect.objectContaining({ nodeId: N('a') })] }, to: B },
        L: { msg: { type: 'left', tx: 4 }, to: A },
        M: { msg: { type: 'nodes', tx: 5, nodes: [] }, to: B },
      })
    })
  })

  it('with a secret, answers only requests that carry a token made for their source address', () => {
    const secret = Buffer.alloc(32, 7)
    const ts = setup()
    ts.run(({ hot, expectObservable }) => {
      const reg = new Registry(undefined, 1000)
      const good = makeToken(secret, A, 0)
      const req$ = hot<Inbound>('-c-q-r-s-t-', {
        c: inb({ type: 'connect', tx: 1, pad: new Uint8Array(32) }),
        q: { msg: { type: 'query_files', tx: 2, token: good }, from: A, bytes: 60 },
        // no token: a small error, only because it is no bigger than the request
        r: { msg: { type: 'query_files', tx: 3 }, from: B, bytes: 100 },
        // A's token from another address: refused, and too small a request to earn any reply
        s: { msg: { type: 'query_files', tx: 4, token: good }, from: B, bytes: 20 },
        // a forged token from the right address
        t: { msg: { type: 'query_files', tx: 5, token: new Uint8Array(16) }, from: A, bytes: 60 },
      })
      expectObservable(trackerFlow(req$, { registry: reg, sweepMs: 100, secret }), '^----------!').toBe('-C-Q-R---T-', {
        C: { msg: { type: 'connected', tx: 1, token: good }, to: A },
        Q: { msg: { type: 'files', tx: 2, files: [] }, to: A },
        R: { msg: { type: 'error', tx: 3, code: 'BAD_TOKEN', message: '' }, to: B },
        T: { msg: { type: 'error', tx: 5, code: 'BAD_TOKEN', message: '' }, to: A },
      })
    })
  })

  it('accepts a token through the next period, not after', () => {
    const secret = Buffer.alloc(32, 9)
    const t = makeToken(secret, A, 0, 100)
    expect(tokenValid(secret, A, t, 99, 100)).toBe(true)
    expect(tokenValid(secret, A, t, 199, 100)).toBe(true)
    expect(tokenValid(secret, A, t, 200, 100)).toBe(false)
    expect(tokenValid(secret, { ...A, port: A.port + 1 }, t, 0, 100)).toBe(false)
    expect(tokenValid(Buffer.alloc(32, 1), A, t, 0, 100)).toBe(false)
  })

  it('a list walked page by page gives every file once, in order, whatever the rows a page reads (small items: more than fit a page of rows)', () => {
    const ts = setup()
    const reg = new Registry(undefined, 1000)
    const total = 1000
    for (let i = 0; i < total; i++) reg.publish({ nodeId: N('e'), host: '10.0.0.9', port: 1 }, { name: 'f', hash: i.toString(16).padStart(64, '0'), size: 1 }, 0)
    const req$ = new Subject<Inbound>()
    const replies: Outbound[] = []
    const sub = trackerFlow(req$, { registry: reg, sweepMs: 100, scheduler: ts }).subscribe((o) => replies.push(o))
    const seen: string[] = []
    let after: string | undefined
    for (let pages = 0; pages < total; pages++) {
      req$.next(inb(after === undefined ? { type: 'query_files', tx: pages } : { type: 'query_files', tx: pages, after }))
      const r = replies.at(-1)?.msg
      if (r?.type !== 'files') throw new Error('expected files')
      seen.push(...r.files.map((f) => f.hash))
      after = r.next
      if (after === undefined) break
    }
    sub.unsubscribe()
    expect(seen).toHaveLength(total)
    expect(seen).toEqual([...seen].sort())
    expect(new Set(seen).size).toBe(total)
    expect(replies.length).toBeGreaterThan(total / 200)
  })

  it('paginates long lists so every reply fits a datagram', () => {
    setup().run(({ hot, expectObservable, flush }) => {
      const reg = new Registry(undefined, 1000)
      for (let i = 0; i < 400; i++) reg.publish({ nodeId: N('e'), host: '10.0.0.9', port: 1 }, { name: `file-${i}-${'x'.repeat(100)}`, hash: i.toString(16).padStart(64, '0'), size: 1 }, 0)
      const req$ = hot<Inbound>('-q', { q: inb({ type: 'query_files', tx: 1 }) })
      const replies: Outbound[] = []
      const sub = trackerFlow(req$, { registry: reg, sweepMs: 100 }).subscribe((o) => replies.push(o))
      // the flow never completes (it sweeps forever): stop it after the reply
      hot('--x').subscribe(() => sub.unsubscribe())
      flush()
      const first = replies[0].msg
      if (first.type !== 'files') throw new Error('expected files')
      expect(first.files.length).toBeGreaterThan(10)
      expect(first.files.length).toBeLessThan(400)
      expect(first.next).toBe(first.files[first.files.length - 1].hash)
      const { encodeDatagram } = require('../../src/protocol/codec') as typeof import('../../src/protocol/codec')
      expect(() => encodeDatagram(first)).not.toThrow()
    })
  })
})
