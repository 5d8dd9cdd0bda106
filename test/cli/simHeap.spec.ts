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
    expect(old * 1024 * 1024).toBeLessThanOrEqual(0.85 * machine.totalMemory)
  })

  it('keeps flags the user gave', () => {
    expect(simNodeFlags(10_000, { ...machine, nodeFlags: '--max-old-space-size=30000 --max-semi-space-size=64' })).toBeNull()
    expect(simNodeFlags(10_000, { ...machine, nodeFlags: '--max-semi-space-size=64' })?.join(' ')).toMatch(/^--max-old-space-size=\d+$/)
  })

  it('refuses a run that cannot fit in the machine, with a usage error that says how much it needs', () => {
    expect(() => simNodeFlags(100_000, machine)).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/needs about 14\d\.\d GiB.*24\.0 GiB/) }))
  })
})
