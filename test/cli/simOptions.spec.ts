import { parseLatency, parseUploads, tooSlowForPieces } from '../../src/cli/simulate'

describe('lp2p simulate --upload and --latency', () => {
  it('--upload: one rate, or classes as rate:share; a rate without a share takes an equal part of the rest', () => {
    expect(parseUploads('20M')).toEqual([{ upload: 20e6, share: 1 }])
    expect(parseUploads('100M:0.1,20M')).toEqual([{ upload: 100e6, share: 0.1 }, { upload: 20e6, share: 0.9 }])
    expect(parseUploads('100M:.5,20M:0.5')).toEqual([{ upload: 100e6, share: 0.5 }, { upload: 20e6, share: 0.5 }])
    const three = parseUploads('1G:0.5,100M,10M')
    expect(three.map((c) => c.upload)).toEqual([1e9, 100e6, 10e6])
    expect(three.map((c) => c.share)).toEqual([0.5, 0.25, 0.25])
    expect(parseUploads(' 50Mi:0.25 , 10M:0.75 ')).toEqual([{ upload: 50 * 1024 * 1024, share: 0.25 }, { upload: 10e6, share: 0.75 }])
  })

  it('--upload: refuses shares that do not add up, leave nothing, or are out of range; a rate twice; no rate; an unlimited class', () => {
    const refused = (v: string, why: RegExp): void => expect(() => parseUploads(v)).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(why) }))
    refused('100M:0.1,20M:0.8', /shares sum to 0.9, not 1/)
    refused('1M:0.333,2M:0.333,3M:0.333', /shares sum to 0.999, not 1/) // (not 0.9990000000000001)
    refused('100M:0x1', /share "0x1"/)
    refused('100M:1e-1,20M', /share "1e-1"/)
    refused('100M:0.6,20M:0.4,5M', /leaving nothing/)
    refused('100M:1.5', /share "1.5" is not a number in \(0, 1\]/)
    refused('100M:0,20M', /share "0"/)
    refused('100M:,20M', /share ""/)
    refused('20M:0.5,20M', /a rate is listed twice/)
    refused(':0.5,20M', /is not rate or rate:share/)
    refused('20M:0.5:1', /is not rate or rate:share/)
    refused('20Mb', /rate "20Mb"/)
    refused('100M:0.5,unlimited', /rate "unlimited" is not a finite number of bytes per second above 0/)
  })

  it('--latency: ms, or min-max ms', () => {
    expect(parseLatency('1')).toEqual({ min: 1, max: 1 })
    expect(parseLatency('0.5-20')).toEqual({ min: 0.5, max: 20 })
    expect(parseLatency(' 2 - 2 ')).toEqual({ min: 2, max: 2 })
    for (const bad of ['', '-1', '20-1', '1-', 'a-b', '1-2-3', '1ms']) {
      expect(() => parseLatency(bad)).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/--latency .* is not ms or min-max ms/) }))
    }
    // a latency the flows' LAN timeouts cannot work with (from 500 ms one way no leecher finishes)
    expect(parseLatency('400')).toEqual({ min: 400, max: 400 })
    for (const bad of ['401', '1-500', '70000']) {
      expect(() => parseLatency(bad)).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/at most 400 ms one way .* within 2 s/) }))
    }
  })

  it('a run where no piece can cross the slowest link before its asker gives up (15 s) is refused, naming the flag and the least rate; one just fast enough is not', () => {
    const one = (upload: number): { upload: number, share: number }[] => [{ upload, share: 1 }]
    // 64 MiB: 256 KiB pieces, 17.5 s at 15 kB/s
    expect(tooSlowForPieces(64 << 20, { upload: one(15e3) })).toMatch(/^--seeder-upload: a piece of this file \(256\.0 KiB\) takes 17\.5 s on a 15 kB\/s link, longer than the 15 s .* \(give at least 17\.5 kB\/s\)$/)
    expect(tooSlowForPieces(64 << 20, { upload: one(20e6), download: 15e3 })).toMatch(/^--download: /)
    expect(tooSlowForPieces(64 << 20, { upload: one(20e6), seederUpload: 15e3 })).toMatch(/^--seeder-upload: /)
    expect(tooSlowForPieces(64 << 20, { upload: one(15e3), seederUpload: 20e6 })).toMatch(/^--upload: /)
    // a slow class beside a fast one: pieces go through the fast one
    expect(tooSlowForPieces(64 << 20, { upload: [{ upload: 20e6, share: 0.5 }, { upload: 15e3, share: 0.5 }] })).toBeNull()
    expect(tooSlowForPieces(64 << 20, { upload: one(17.5e3) })).toBeNull()
  })
})
