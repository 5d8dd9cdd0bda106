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

  it('runs exactly as a sorted reference while actions schedule and cancel others during the run, near and far (across many slots)', () => {
    let x = 987654
    const rnd = (): number => { x = (x * 1103515245 + 12345) & 0x7fffffff; return x / 0x7fffffff }
    // a delay: mostly soon (within a slot), often far (timeouts, many slots ahead), sometimes 0 or fractional
    const delay = (): number => { const r = rnd(); return r < 0.1 ? 0 : r < 0.5 ? rnd() * 3 : r < 0.8 ? rnd() * 120 : 200 + Math.floor(rnd() * 3000) }
    const s = new SimScheduler()
    // the reference: every live action in an array, the least (time, seq) runs next
    const ref: Array<{ time: number, seq: number, id: number, live: boolean }> = []
    let seq = 0
    const got: Array<[number, number]> = []
    const want: Array<[number, number]> = []
    const handles = new Map<number, { cancel: () => void, r: { live: boolean } }>()
    let nextId = 0
    // (`chain`: one action at a time, each 0-2 ms after the last until 3.5 s: the heap is never empty, as in a swarm)
    const add = (now: number, depth: number, chain = false): void => {
      const id = nextId++
      const d = chain ? rnd() * 2 : delay()
      const r = { time: now + d, seq: seq++, id, live: true }
      ref.push(r)
      const body = (): void => {
        got.push([s.now(), id])
        handles.delete(id)
        if (chain) { if (s.now() < 3500) add(s.now(), 0, true); return }
        // each action schedules up to two more and may cancel a pending one
        if (depth < 6) for (let k = 0; k < 2; k++) if (rnd() < 0.55) add(s.now(), depth + 1)
        if (rnd() < 0.3 && handles.size > 0) {
          const keys = [...handles.keys()]
          const victim = keys[Math.floor(rnd() * keys.length)]
          const h = handles.get(victim)
          if (h !== undefined) { h.cancel(); h.r.live = false; handles.delete(victim) }
        }
      }
      const cancel = id % 2 === 0 ? ((sub) => () => sub.unsubscribe())(s.schedule(body, d)) : ((t) => () => t.cancel())(s.at(d, body))
      if (!chain) handles.set(id, { cancel, r })
    }
    for (let i = 0; i < 400; i++) add(0, 0)
    add(0, 0, true)
    s.run()
    // replay the reference: the same bodies in (time, seq) order, recording what ran
    // (the real run decided what was scheduled and cancelled; the reference checks the order)
    const ran = ref.filter((r) => r.live).sort((a, b) => a.time - b.time || a.seq - b.seq)
    for (const r of ran) want.push([r.time, r.id])
    expect(got.length).toBeGreaterThan(3000)
    expect(got).toEqual(want)
    expect(s.queued).toBe(0)
  })
})
