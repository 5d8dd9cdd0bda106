import fs from 'node:fs'
import path from 'node:path'
import { perTest, runLp2p, sha256File, shareRandom, shareTwice, spawnLp2p, startPeer, startTracker } from './helpers'

interface NodeStatus { nodeId: string, address: string, uploaded: number, downloaded: number, files: { fileId: string, completeness: number }[] }

/** Swarms of real processes on 127.0.0.1. */
describe('swarm', () => {
  const { procs, dir: testDir } = perTest('swarm')
  let dir: string
  beforeEach(() => { dir = testDir() })

  it('1 seeder + 3 leechers with upload caps: every copy exact, and the leechers upload to each other', async () => {
    const F = 24 * 1024 * 1024
    const { share, sha } = shareRandom(dir, 'share', 'swarm.bin', F)
    const { address: tracker } = await startTracker(procs)
    const seeder = await startPeer(procs, share, tracker, ['--upload-limit', '8M'])
    const leechers = [0, 1, 2].map((i) => {
      const p = spawnLp2p(['get', 'swarm.bin', '--out', path.join(dir, `l${i}`), '--tracker', tracker, '--upload-limit', '8M', '--seed', '--json'])
      procs.push(p)
      return p
    })
    for (const l of leechers) await l.waitFor((e) => e.event === 'seeding', 90_000)
    for (let i = 0; i < 3; i++) {
      expect(leechers[i].events.find((e) => e.event === 'done')).toMatchObject({ sha256: sha })
      expect(await sha256File(path.join(dir, `l${i}`, 'swarm.bin'))).toBe(sha)
    }
    // counters arrive with heartbeats (every 3 s), each node on its own clock: wait until every
    // leecher has reported its download and every sender its uploads (a piece's sender may report
    // it a heartbeat after its receiver did)
    let nodes: NodeStatus[] = []
    const leecherStatus = (): NodeStatus[] => nodes.filter((n) => n.address !== seeder.address)
    for (let i = 0; i < 40; i++) {
      nodes = (await runLp2p(['status', '--tracker', tracker, '--json'])).events[0] as unknown as NodeStatus[]
      const reported = nodes.reduce((sum, n) => sum + n.uploaded, 0)
      if (leecherStatus().length === 3 && leecherStatus().every((n) => n.downloaded === F) && reported >= 3 * F) break
      await new Promise((r) => setTimeout(r, 250))
    }
    const ls = leecherStatus()
    expect(ls).toHaveLength(3)
    for (const n of ls) {
      expect(n.downloaded).toBe(F)
      expect(n.files).toEqual([expect.objectContaining({ fileId: sha, completeness: 1 })])
    }
    const fromLeechers = ls.reduce((s, n) => s + n.uploaded, 0)
    const fromSeeder = nodes.find((n) => n.address === seeder.address)?.uploaded ?? NaN
    // 3F were delivered; the leechers supplied a real share of it, so the seeder sent well under 3F
    expect(fromLeechers + fromSeeder).toBeGreaterThanOrEqual(3 * F)
    expect(fromLeechers).toBeGreaterThan(0.5 * F)
    expect(fromSeeder).toBeLessThan(2.5 * F)
  }, 120_000)

  it('a peer behind an upload cap lower than a piece per PIECE_TIMEOUT_MS (16 kB/s: a 256 KiB piece takes 16 s) still delivers: askers hear BUSY while its budget repays a piece, instead of timing out on it; a get behind such a download cap too', async () => {
    // (before: the first piece went at once, the second waited 16 s for the budget, its asker gave
    // up after 15 s and the get ended "no peer can supply")
    const F = 300 * 1024 // 2 pieces: 256 KiB + 44 KiB
    const { share, sha } = shareRandom(dir, 'share', 'slow.bin', F)
    const { address: tracker } = await startTracker(procs)
    await startPeer(procs, share, tracker, ['--upload-limit', '16k'])
    const r = await runLp2p(['get', 'slow.bin', '--out', path.join(dir, 'out'), '--tracker', tracker, '--json'])
    expect(r.code).toBe(0)
    expect(r.events.at(-1)).toMatchObject({ event: 'done', sha256: sha })
    expect(r.events.filter((e) => e.event === 'peer-dropped')).toEqual([])
    expect(await sha256File(path.join(dir, 'out', 'slow.bin'))).toBe(sha)

    // the same cap on the download side (an uncapped peer too): a piece waiting for our own budget
    // is not its peer's fault (before: the piece deadline ran during that wait, every source was dropped)
    await startPeer(procs, share, tracker)
    const d = await runLp2p(['get', 'slow.bin', '--out', path.join(dir, 'out2'), '--tracker', tracker, '--download-limit', '16k', '--json'])
    expect(d.code).toBe(0)
    expect(d.events.filter((e) => e.event === 'peer-dropped')).toEqual([])
    expect(await sha256File(path.join(dir, 'out2', 'slow.bin'))).toBe(sha)
  }, 120_000)

  it('a peer whose copy was corrupted on disk after publishing never makes a leecher\'s copy wrong', async () => {
    const F = 8 * 1024 * 1024
    const { a: good, b: bad, sha } = shareTwice(dir, 'good', 'bad', 'data.bin', F)
    const { address: tracker } = await startTracker(procs)
    // --no-watch: the bad copy rots unnoticed (a watching peer would see the write and withdraw it)
    await startPeer(procs, bad, tracker, ['--no-watch'])
    await startPeer(procs, good, tracker)
    // flip bytes all over the bad copy, keeping its size: its mapping now serves wrong pieces
    const fd = fs.openSync(path.join(bad, 'data.bin'), 'r+')
    for (let off = 0; off < F; off += 128 * 1024) fs.writeSync(fd, Buffer.from('corrupt!'), 0, 8, off + 1000)
    fs.closeSync(fd)
    const out = path.join(dir, 'out')
    const r = await runLp2p(['get', 'data.bin', '--out', out, '--tracker', tracker, '--json'])
    expect(r.code).toBe(0)
    expect(r.events.at(-1)).toMatchObject({ event: 'done', sha256: sha })
    expect(await sha256File(path.join(out, 'data.bin'))).toBe(sha)
    // the bad peer's pieces were caught one by one
    expect(r.events.some((e) => e.event === 'piece-failed')).toBe(true)
  }, 60_000)
})
