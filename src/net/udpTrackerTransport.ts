import { filter, map, mergeMap, of, share } from 'rxjs'
import { log } from '../log'
import { decodeDatagram, encodeDatagram } from '../protocol/codec'
import type { TrackerMessage } from '../protocol/messages'
import type { Endpoint } from '../tracker/flow'
import type { TrackerTransport } from './trackerClient'
import type { UdpPort } from './udp'

/** A tracker reached over a UDP port: only datagrams from the tracker's address are read. */
export function udpTrackerTransport (udp: UdpPort, tracker: Endpoint): TrackerTransport {
  const l = log.child({ module: 'tracker-client' })
  const incoming$ = udp.datagrams$.pipe(
    filter((d) => d.from.port === tracker.port && sameHost(d.from.address, tracker.address)),
    mergeMap((d) => {
      try {
        return of<TrackerMessage | null>(decodeDatagram(d.data))
      } catch (err) {
        l.warn({ from: d.from, err: (err as Error).message }, 'dropped malformed datagram from tracker')
        return of(null)
      }
    }),
    filter((m): m is TrackerMessage => m !== null),
    share(),
  )
  return {
    name: `${tracker.address}:${tracker.port}`,
    send: (msg) => udp.send(encodeDatagram(msg), tracker),
    incoming$,
  }
}

function sameHost (a: string, b: string): boolean {
  const norm = (h: string): string => h.replace(/^::ffff:/, '') === 'localhost' ? '127.0.0.1' : h.replace(/^::ffff:/, '')
  return norm(a) === norm(b)
}
