import { TestScheduler } from 'rxjs/testing'
import { mergeMap, Subject, timer } from 'rxjs'
import { TrackerClient, trackerRequest, type TrackerTransport } from '../../src/net/trackerClient'
import type { TrackerMessage, TrackerRequest } from '../../src/protocol/messages'

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

/** A transport to a fake tracker: what was sent (and when), and `answer` replying through `reply(message, after frames)`. */
function fakeTransport (ts: TestScheduler, answer: (msg: TrackerRequest, k: number, reply: (m: TrackerMessage, frames: number) => void) => void): { transport: TrackerTransport, sent: { frame: number, msg: TrackerRequest }[] } {
  const incoming = new Subject<TrackerMessage>()
  const sent: { frame: number, msg: TrackerRequest }[] = []
  const reply = (m: TrackerMessage, frames: number): void => { ts.schedule(() => incoming.next(m), frames) }
  return {
    sent,
    transport: {
      name: 'test-tracker',
      incoming$: incoming,
      send: (msg) => {
        sent.push({ frame: ts.now(), msg })
        answer(msg, sent.length - 1, reply)
      },
    },
  }
}

/**
 * A scripted tracker: `answers[k]` says after how many frames the k-th request is answered
 * (undefined: silence), or that it gets an error reply.
 */
function scripted (ts: TestScheduler, answers: (number | 'error' | undefined)[]): { transport: TrackerTransport, sent: { frame: number, msg: TrackerRequest }[] } {
  return fakeTransport(ts, (msg, k, reply) => {
    const a = answers[k]
    if (a === undefined) return
    if (a === 'error') { reply({ type: 'error', tx: msg.tx, code: 'FULL', message: 'tracker full' }, 1); return }
    // a stray reply with another tx first: must be ignored
    reply({ type: 'announced', tx: msg.tx + 1, interval: 1, resync: true }, 0)
    reply({ type: 'announced', tx: msg.tx, interval: 3000, resync: false }, a)
  })
}

const announce = { type: 'announce', nodeId: 'a'.repeat(32), port: 1, files: 0, uploaded: 0, downloaded: 0 } as const

describe('trackerRequest', () => {
  it('sends once and emits the reply that echoes its transaction id', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      let tx = 100
      const { transport, sent } = scripted(ts, [3])
      expectObservable(trackerRequest(transport, announce, { scheduler: ts, timeoutMs: 10, nextTx: () => tx++ })).toBe('---(r|)', {
        r: { type: 'announced', tx: 100, interval: 3000, resync: false },
      })
      ts.flush()
      expect(sent.map((s) => s.msg.tx)).toEqual([100])
    })
  })

  it('retries a silent tracker with a fresh transaction id, waiting twice as long each time', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      let tx = 1
      // first two attempts get no answer; the third is answered after 2 frames
      const { transport, sent } = scripted(ts, [undefined, undefined, 2])
      expectObservable(trackerRequest(transport, announce, { scheduler: ts, timeoutMs: 10, attempts: 5, nextTx: () => tx++ })).toBe('32ms (r|)', {
        r: { type: 'announced', tx: 3, interval: 3000, resync: false },
      })
      ts.flush()
      // attempt k waits 10·2^k: sends at 0, 10, 30
      expect(sent.map((s) => [s.frame, s.msg.tx])).toEqual([[0, 1], [10, 2], [30, 3]])
    })
  })

  it('gives up with ERR_TRACKER_UNREACHABLE after every attempt stayed silent', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { transport, sent } = scripted(ts, [])
      expectObservable(trackerRequest(transport, announce, { scheduler: ts, timeoutMs: 10, attempts: 3 })).toBe('70ms #', undefined, expect.objectContaining({ code: 'ERR_TRACKER_UNREACHABLE' }))
      ts.flush()
      expect(sent).toHaveLength(3)
    })
  })

  it('fails at once on an error reply, without retrying', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { transport, sent } = scripted(ts, ['error'])
      expectObservable(trackerRequest(transport, announce, { scheduler: ts, timeoutMs: 10, attempts: 3 })).toBe('-#', undefined, expect.objectContaining({ code: 'ERR_REMOTE', remoteCode: 'FULL' }))
      ts.flush()
      expect(sent).toHaveLength(1)
    })
  })

  it('fails with ERR_CONNECTION_CLOSED, without retrying, when the replies end (the node closed): it never waits forever', () => {
    const ts = setup()
    ts.run(({ cold, expectObservable }) => {
      const sent: TrackerRequest[] = []
      const transport: TrackerTransport = { name: 't', send: (m) => { sent.push(m) }, incoming$: cold<TrackerMessage>('---|') }
      expectObservable(trackerRequest(transport, announce, { scheduler: ts, timeoutMs: 10, attempts: 3 })).toBe('---#', undefined, expect.objectContaining({ code: 'ERR_CONNECTION_CLOSED' }))
      ts.flush()
      expect(sent).toHaveLength(1)
    })
  })

  it('sends nothing until subscribed, and stops waiting when unsubscribed', () => {
    const ts = setup()
    ts.run(({ expectObservable }) => {
      const { transport, sent } = scripted(ts, [])
      const req = trackerRequest(transport, announce, { scheduler: ts, timeoutMs: 10, attempts: 3 })
      expect(sent).toHaveLength(0)
      expectObservable(req, '^----!').toBe('-----')
      ts.flush()
      expect(sent).toHaveLength(1)
    })
  })
})

const TOKEN = new Uint8Array(16).fill(7)
const hashOf = (k: number): string => k.toString(16).padStart(64, '0')
/**
 * A tracker that hands out TOKEN and answers announces; a leave only if `answerLeave`; with
 * `files`, it lists `total` files, `perPage` a page (`stuck`: every page says "more after" the same key).
 */
function fakeTracker (ts: TestScheduler, o: { answerLeave?: boolean, files?: { total: number, perPage: number, stuck?: boolean } } = {}): { transport: TrackerTransport, sent: { frame: number, msg: TrackerRequest }[] } {
  return fakeTransport(ts, (msg, _k, reply) => {
    if (msg.type === 'connect') reply({ type: 'connected', tx: msg.tx, token: TOKEN }, 1)
    else if (msg.type === 'announce') reply({ type: 'announced', tx: msg.tx, interval: 3000, resync: false }, 1)
    else if (msg.type === 'leave' && o.answerLeave === true) reply({ type: 'left', tx: msg.tx }, 1)
    else if (msg.type === 'query_files' && o.files !== undefined) {
      const { total, perPage, stuck } = o.files
      const from = stuck === true || msg.after === undefined ? 0 : parseInt(msg.after, 16) + 1
      const files = Array.from({ length: Math.min(perPage, total - from) }, (_, i) => ({ name: `f${from + i}`, hash: hashOf(from + i), size: 1, blockSize: 262144, pieces: 1 }))
      const last = from + files.length - 1
      reply(last < total - 1 ? { type: 'files', tx: msg.tx, files, next: hashOf(last) } : { type: 'files', tx: msg.tx, files }, 1)
    }
  })
}

describe('TrackerClient.leave', () => {
  it('sends nothing for a client that never reached the tracker', () => {
    const ts = setup()
    const { transport, sent } = fakeTracker(ts, { answerLeave: true })
    ts.run(({ expectObservable }) => {
      expectObservable(new TrackerClient(transport, { scheduler: ts }).leave('a'.repeat(32), 1, 50)).toBe('|')
    })
    expect(sent).toEqual([])
  })

  it('sends one leave with the token it holds, and waits for the answer', () => {
    const ts = setup()
    const { transport, sent } = fakeTracker(ts, { answerLeave: true })
    ts.run(({ expectObservable }) => {
      const c = new TrackerClient(transport, { scheduler: ts, timeoutMs: 10 })
      c.request(announce).subscribe()
      expectObservable(timer(5).pipe(mergeMap(() => c.leave('a'.repeat(32), 7001, 50)))).toBe('------(x|)', { x: expect.objectContaining({ type: 'left' }) })
    })
    expect(sent.map((x) => x.msg.type)).toEqual(['connect', 'announce', 'leave'])
    expect(sent[2].msg).toMatchObject({ nodeId: 'a'.repeat(32), port: 7001, token: TOKEN })
  })

  it('gives a silent tracker `waitMs` and no second try, and does not fail', () => {
    const ts = setup()
    const { transport, sent } = fakeTracker(ts, { answerLeave: false })
    ts.run(({ expectObservable }) => {
      const c = new TrackerClient(transport, { scheduler: ts, timeoutMs: 10, attempts: 5 })
      c.request(announce).subscribe()
      expectObservable(timer(5).pipe(mergeMap(() => c.leave('a'.repeat(32), 7001, 50)))).toBe('5ms 50ms |')
    })
    expect(sent.map((x) => x.msg.type)).toEqual(['connect', 'announce', 'leave'])
  })
})

describe('TrackerClient lists and pace', () => {
  it('follows a list to its end, past a thousand pages (it was cut there, and passed on as whole)', () => {
    const ts = setup()
    ts.maxFrames = Infinity
    const { transport, sent } = fakeTracker(ts, { files: { total: 2500, perPage: 1 } })
    let got: unknown[] = []
    new TrackerClient(transport, { scheduler: ts }).files().subscribe((fs) => { got = fs })
    ts.flush()
    expect(got).toHaveLength(2500)
    expect(got.at(-1)).toMatchObject({ name: 'f2499' })
    expect(sent.filter((s) => s.msg.type === 'query_files')).toHaveLength(2500)
  })

  it('fails, never passing a list on cut, when its pages do not move on or it is longer than a tracker holds', () => {
    for (const [total, perPage, stuck, maxItems] of [[100, 5, true, 100_000], [1000, 7, false, 50]] as const) {
      const ts = setup()
      const { transport, sent } = fakeTracker(ts, { files: { total, perPage, stuck } })
      let error: Error | undefined
      let got: unknown
      new TrackerClient(transport, { scheduler: ts }).files(maxItems).subscribe({ next: (fs) => { got = fs }, error: (e: Error) => { error = e } })
      ts.flush()
      expect(got).toBeUndefined()
      expect(error).toMatchObject({ code: 'ERR_PROTOCOL', message: expect.stringMatching(/^the tracker's list of files did not end/) })
      expect(sent.filter((s) => s.msg.type === 'query_files').length).toBeLessThanOrEqual(stuck ? 2 : Math.ceil(maxItems / perPage) + 1)
    }
  })

  it('paces its datagrams at ratePerSecond (twice that in a burst); a request\'s timeout starts when it is sent', () => {
    const ts = setup()
    ts.maxFrames = Infinity
    const { transport, sent } = fakeTracker(ts)
    const c = new TrackerClient(transport, { scheduler: ts, ratePerSecond: 10, timeoutMs: 50, attempts: 1 })
    let answered = 0
    let failed = 0
    for (let i = 0; i < 30; i++) c.request({ type: 'announce', nodeId: 'a'.repeat(32), port: 1, files: 0, uploaded: 0, downloaded: 0 }).subscribe({ next: () => answered++, error: () => failed++ })
    ts.flush()
    expect(failed).toBe(0)
    expect(answered).toBe(30)
    const frames = sent.map((s) => s.frame)
    // the connect and 19 announces from the burst of 20 at once, then one each 100 ms
    expect(frames.filter((f) => f <= 1)).toHaveLength(20)
    expect(frames.at(-1)).toBeGreaterThanOrEqual(1000)
    expect(frames.at(-1)).toBeLessThanOrEqual(1200)
  })
})
