import { interval, map, take, timeout, timer, toArray, NEVER, firstValueFrom, lastValueFrom } from 'rxjs'
import { SimScheduler } from '../../src/sim/scheduler'

describe('SimScheduler', () => {
  it('runs actions in time order, and in scheduling order at equal times', () => {
    const s = new SimScheduler()
    const seen: string[] = []
    s.schedule(() => seen.push(`b@${s.now()}`), 20)
    s.schedule(() => seen.push(`a@${s.now()}`), 10)
    s.schedule(() => seen.push(`c@${s.now()}`), 20)
    s.schedule(() => seen.push(`d@${s.now()}`), 0)
    s.run()
    expect(seen).toEqual(['d@0', 'a@10', 'b@20', 'c@20'])
  })

  it('drives rxjs timers, intervals and timeouts in virtual time', async () => {
    const s = new SimScheduler()
    const ticks = lastValueFrom(interval(50, s).pipe(take(3), map(() => s.now()), toArray()))
    const late = firstValueFrom(NEVER.pipe(timeout({ first: 1000, scheduler: s, with: () => timer(0, s).pipe(map(() => s.now())) })))
    s.run()
    expect(await ticks).toEqual([50, 100, 150])
    expect(await late).toBe(1000)
    expect(s.queued).toBe(0)
  })

  it('takes a cancelled action out of the queue at once, and never runs it', () => {
    const s = new SimScheduler()
    let ran = 0
    const subs = Array.from({ length: 100 }, (_, i) => s.schedule(() => { ran++ }, 1000 + i))
    expect(s.queued).toBe(100)
    for (const sub of subs.slice(0, 60)) sub.unsubscribe()
    expect(s.queued).toBe(40)
    s.run()
    expect(ran).toBe(40)
  })

  it('reschedules a periodic action in place and stops at a time limit', () => {
    const s = new SimScheduler()
    const at: number[] = []
    s.schedule(function (this: { schedule: (st?: unknown, d?: number) => void }) { at.push(s.now()); this.schedule(undefined, 30) }, 10)
    expect(s.run(100)).toBe(100)
    expect(at).toEqual([10, 40, 70, 100])
    expect(s.queued).toBe(1)
  })

  it('keeps the heap ordered under random schedules and cancels (against a sort)', () => {
    const s = new SimScheduler()
    let x = 12345
    const rnd = (): number => { x = (x * 1103515245 + 12345) & 0x7fffffff; return x / 0x7fffffff }
    const expected: Array<[number, number]> = []
    const got: Array<[number, number]> = []
    for (let i = 0; i < 2000; i++) {
      const d = Math.floor(rnd() * 500)
      // rxjs actions and bare timers share the heap
      const cancel = i % 2 === 0 ? ((sub) => () => sub.unsubscribe())(s.schedule(() => got.push([s.now(), i]), d)) : ((t) => () => t.cancel())(s.at(d, () => got.push([s.now(), i])))
      if (rnd() < 0.3) cancel(); else expected.push([d, i])
    }
    s.run()
    expected.sort((a, b) => a[0] - b[0] || a[1] - b[1])
    expect(got).toEqual(expected)
  })
})
