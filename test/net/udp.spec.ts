import { localAddressToward } from '../../src/net/udp'

describe('localAddressToward', () => {
  it('is the loopback address of the family of a tracker on loopback', async () => {
    expect(await localAddressToward({ address: '127.0.0.1', port: 7070 })).toBe('127.0.0.1')
    expect(await localAddressToward({ address: '::1', port: 7070 })).toBe('::1')
  })

  it('falls back to the loopback of the family when the address cannot be connected to (port 0)', async () => {
    expect(await localAddressToward({ address: '127.0.0.1', port: 0 })).toBe('127.0.0.1')
    expect(await localAddressToward({ address: '::1', port: 0 })).toBe('::1')
  })
})
