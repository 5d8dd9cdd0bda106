import { TestScheduler } from 'rxjs/testing'
import { Subject } from 'rxjs'
import { trackerRequest, type TrackerTransport } from '../../src/net/trackerClient'
import type { TrackerMessage, TrackerRequest } from '../../src/protocol/messages'

function setup (): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected))
}

/**
 * A scripted tracker: `answers[k]` says after how many frames the k-th request is answered
 * (undefined: silence), or that it gets an error reply.
 */
function scripted (ts: TestScheduler, answers: (number | 'error' | undefined)[]): { transport: TrackerTransport, sent: { frame: number, msg: TrackerRequest }[] } {
  const incoming = new Subject<TrackerMessage>()
  const sent: { frame: number, msg: TrackerRequest }[] = []
  return {
    sent,
    transport: {
      name: 'test-tracker',
      incoming$: incoming,
      send: (msg) => {
        const k = sent.length
        sent.push({ frame: ts.now(), msg })
        const a = answers[k]
        if (a === undefined) return
        if (a === 'error') { ts.schedule(() => incoming.next({ type: 'error', tx: msg.tx, code: 'FULL', message: 'tracker full' }), 1); return }
        // a stray reply with another tx first: must be ignored
        ts.schedule(() => incoming.next({ type: 'announced', tx: msg.tx + 1, interval: 1, resync: true }), 0)
        ts.schedule(() => incoming.next({ type: 'announced', tx: msg.tx, interval: 3000, resync: false }), a)
      },
    },
  }
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
