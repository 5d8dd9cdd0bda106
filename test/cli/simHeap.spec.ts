import { simHeapBytes, simNodeFlags } from '../../src/cli/simHeap'

const GiB = 1024 ** 3
const machine = { heapLimit: 4 * GiB, totalMemory: 24 * GiB, nodeFlags: '' }

describe('the heap a simulation runs with', () => {
  it('a small run stays in this process', () => {
    expect(simNodeFlags(100, machine)).toBeNull()
  })

  it('a big run gets the bigger young generation, and a heap limit when node\'s default is too small', () => {
    expect(simNodeFlags(1000, machine)).toEqual(['--max-semi-space-size=128'])
    const flags = simNodeFlags(10_000, machine) as string[]
    expect(flags).toContain('--max-semi-space-size=512')
    const old = Number(/--max-old-space-size=(\d+)/.exec(flags.join(' '))?.[1])
    expect(old * 1024 * 1024).toBeGreaterThanOrEqual(simHeapBytes(10_000))
    // old space and young generation (three semi-spaces) together within 85 % of the machine
    expect(old * 1024 * 1024 + 3 * 512 * 1024 * 1024).toBeLessThanOrEqual(0.85 * machine.totalMemory)
  })

  it('keeps flags the user gave', () => {
    expect(simNodeFlags(10_000, { ...machine, nodeFlags: '--max-old-space-size=30000 --max-semi-space-size=64' })).toBeNull()
    expect(simNodeFlags(10_000, { ...machine, nodeFlags: '--max-semi-space-size=64' })?.join(' ')).toMatch(/^--max-old-space-size=\d+$/)
  })

  it('refuses a run that cannot fit in the machine, with a usage error that says how much it needs', () => {
    expect(() => simNodeFlags(100_000, machine)).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/needs about 14\d\.\d GiB.*24\.0 GiB/) }))
  })

  it('counts the young generation: a run whose old space would fit, but not with 1.5 GiB of young generation on top, is refused', () => {
    // 10,000 nodes want about 15.6 GiB of old space; 85 % of 18.8 GiB is 16 GiB
    const small = { ...machine, totalMemory: 18.8 * GiB }
    expect(simHeapBytes(10_000)).toBeLessThan(0.85 * small.totalMemory)
    expect(() => simNodeFlags(10_000, small)).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/needs about 17\.\d GiB/) }))
    // with a young generation the user chose small, it fits
    expect(simNodeFlags(10_000, { ...small, nodeFlags: '--max-semi-space-size=16' })?.join(' ')).toMatch(/^--max-old-space-size=\d+$/)
  })
})
