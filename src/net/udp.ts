import dgram from 'node:dgram'
import net from 'node:net'
import { Observable, share, Subject } from 'rxjs'
import type { Endpoint } from '../tracker/flow'

export interface Datagram { data: Buffer, from: Endpoint }

/** A bound UDP socket as a stream of datagrams and a send function. */
export interface UdpPort {
  readonly datagrams$: Observable<Datagram>
  send: (data: Buffer, to: Endpoint) => void
  address: () => Endpoint
  close: () => void
}

/**
 * Bind a UDP socket. Errors on send (an unreachable peer, a full buffer) are reported to
 * `onSendError` and never thrown: datagrams are best-effort, the request layer retries.
 */
export function bindUdp (host: string, port: number, onSendError?: (err: Error, to: Endpoint) => void): Promise<UdpPort> {
  const type = net.isIPv6(host) ? 'udp6' : 'udp4'
  const sock = dgram.createSocket({ type, reuseAddr: false })
  const incoming = new Subject<Datagram>()
  let closed = false
  sock.on('message', (data, rinfo) => incoming.next({ data, from: { address: rinfo.address, port: rinfo.port } }))
  return new Promise((resolve, reject) => {
    sock.once('error', reject)
    sock.bind(port, host, () => {
      sock.removeListener('error', reject)
      sock.on('error', (err) => onSendError?.(err, { address: '', port: 0 }))
      resolve({
        datagrams$: incoming.asObservable().pipe(share()),
        send: (data, to) => {
          if (closed) return
          sock.send(data, to.port, to.address, (err) => { if (err != null) onSendError?.(err, to) })
        },
        address: () => { const a = sock.address(); return { address: a.address, port: a.port } },
        close: () => {
          if (closed) return
          closed = true
          incoming.complete()
          sock.close()
        },
      })
    })
  })
}

/**
 * The local address this machine sends from to reach `to` (a UDP socket is connected, which
 * sends nothing, and asked its address): 127.0.0.1 for a tracker on loopback, the LAN address for
 * one on the LAN. The loopback of `to`'s family when there is no route.
 */
export async function localAddressToward (to: Endpoint): Promise<string> {
  const v6 = net.isIPv6(to.address)
  const sock = dgram.createSocket(v6 ? 'udp6' : 'udp4')
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.connect(to.port, to.address, () => { sock.removeListener('error', reject); resolve() })
    })
    return sock.address().address
  } catch {
    return v6 ? '::1' : '127.0.0.1'
  } finally {
    sock.close()
  }
}
