import fs from 'node:fs'
import path from 'node:path'
import { writeRandomFile } from '../../src/cli/demo'
import { listening, spawnLp2p } from '../../src/cli/spawn'
import { perTest, runLp2p, sha256File, shareRandom, startGet, startPeer, startTracker } from './helpers'

interface Listed { name: string, fileId: string, size: number, holders: number }
interface NodeRow { nodeId: string, files: { fileId: string }[] }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** `lp2p ARGS --json` parsed (ls and status print one JSON array). */
async function ask<T> (args: string[]): Promise<T> {
  const r = await runLp2p([...args, '--json'])
  expect(r.code).toBe(0)
  return r.events[0] as T
}

/** Ask again every 300 ms until `ok` or `ms` has passed (bounded); the last answer. */
async function poll<T> (q: () => Promise<T>, ok: (t: T) => boolean, ms: number): Promise<T> {
  const until = Date.now() + ms
  let last = await q()
  while (!ok(last) && Date.now() < until) { await sleep(300); last = await q() }
  return last
}

describe('peer --share follows its folder', () => {
  const t = perTest('watch')

  it('publishes a file copied in, without a restart; withdraws it when deleted', async () => {
    const { address: tracker } = await startTracker(t.procs)
    const { share } = shareRandom(t.dir(), 'share', 'first.bin', 1 << 20)
    const { proc: peer } = await startPeer(t.procs, share, tracker)
    const nodeId = (peer.events.find((e) => e.event === 'listening') as { nodeId: string }).nodeId

    // written elsewhere, then copied in (as a user would)
    const src = path.join(t.dir(), 'new.bin')
    const sha = writeRandomFile(src, 3 << 20)
    fs.copyFileSync(src, path.join(share, 'new.bin'))
    fs.writeFileSync(path.join(share, 'bad:name.bin'), 'x') // (a name a Windows leecher could not write: not shared)
    const ls = () => ask<Listed[]>(['ls', '--tracker', tracker])
    const listed = await poll(ls, (l) => l.some((f) => f.name === 'new.bin'), 15_000)
    expect(listed.find((f) => f.name === 'new.bin')).toMatchObject({ fileId: sha, size: 3 << 20 })

    const out = path.join(t.dir(), 'out')
    const get = await runLp2p(['get', 'new.bin', '--out', out, '--tracker', tracker, '--json'])
    expect(get.code).toBe(0)
    expect(await sha256File(path.join(out, 'new.bin'))).toBe(sha)

    fs.unlinkSync(path.join(share, 'new.bin'))
    const holds = (rows: NodeRow[]): boolean => rows.some((n) => n.nodeId === nodeId && n.files.some((f) => f.fileId === sha))
    const status = await poll(() => ask<NodeRow[]>(['status', '--tracker', tracker]), (rows) => !holds(rows), 15_000)
    expect(holds(status)).toBe(false)
    // the peer still shares its other file
    expect(status.find((n) => n.nodeId === nodeId)?.files.length).toBe(1)
    // and told its user, on stdout
    expect(peer.events).toEqual(expect.arrayContaining([
      expect.objectContaining({ event: 'shared', name: 'new.bin', fileId: sha }),
      expect.objectContaining({ event: 'withdrawn', name: 'new.bin', fileId: sha }),
    ]))
    // and gives its disk blocks back: the mapping it was served from goes within seconds (it stayed
    // until some full collection: many minutes on an idle peer)
    const removed = path.join(share, 'new.bin')
    const mapsOf = (): number => fs.readFileSync(`/proc/${peer.child.pid as number}/maps`, 'utf8').split('\n').filter((l) => l.includes(removed)).length
    expect(await poll(async () => mapsOf(), (n) => n === 0, 10_000)).toBe(0)
    // the file it skipped was said once (a warning on stderr), not at every rescan since
    const skipped = peer.stderr.filter((l) => l.includes('bad:name.bin')).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(skipped).toEqual([expect.objectContaining({ level: 40, msg: 'not shared', reason: expect.stringMatching(/^file name unsafe to publish/) })])
    expect((await ask<Listed[]>(['ls', '--tracker', tracker])).map((f) => f.name)).not.toContain('bad:name.bin')
    // the tracker keeps file metadata (durable by design): the file stays listed, with no holder
    expect((await ls()).find((f) => f.fileId === sha)).toMatchObject({ holders: 0 })
    expect(await runLp2p(['get', 'new.bin', '--out', path.join(t.dir(), 'out2'), '--tracker', tracker, '--json'], 30_000).then((r) => r.code)).not.toBe(0)
  })

  it('a file changed in place: `get NAME` fetches the new version (the old one stays listed, held by no one)', async () => {
    const { address: tracker } = await startTracker(t.procs)
    const { share, sha: before } = shareRandom(t.dir(), 'share', 'image.bin', 1 << 20)
    await startPeer(t.procs, share, tracker)
    const ls = () => ask<Listed[]>(['ls', '--tracker', tracker])
    expect((await ls()).find((f) => f.name === 'image.bin')).toMatchObject({ fileId: before, holders: 1 })

    // a new build of the same artifact, written elsewhere and moved over the old one
    const src = path.join(t.dir(), 'image.new')
    const after = writeRandomFile(src, 2 << 20)
    fs.renameSync(src, path.join(share, 'image.bin'))
    const both = (l: Listed[]): boolean => l.some((f) => f.fileId === after && f.holders === 1) && l.some((f) => f.fileId === before && f.holders === 0)
    const listed = await poll(ls, both, 15_000)
    expect(listed.filter((f) => f.name === 'image.bin')).toEqual(expect.arrayContaining([
      expect.objectContaining({ fileId: before, holders: 0 }),
      expect.objectContaining({ fileId: after, holders: 1 }),
    ]))

    const out = path.join(t.dir(), 'out')
    const get = await runLp2p(['get', 'image.bin', '--out', out, '--tracker', tracker, '--json'])
    expect(get.code).toBe(0)
    expect(await sha256File(path.join(out, 'image.bin'))).toBe(after)
  })

  it('a shared file renamed on disk is listed and fetched by its new name', async () => {
    const { address: tracker } = await startTracker(t.procs)
    const { share, sha } = shareRandom(t.dir(), 'share', 'draft.bin', 1 << 20)
    await startPeer(t.procs, share, tracker)
    const ls = () => ask<Listed[]>(['ls', '--tracker', tracker])
    expect((await ls()).map((f) => f.name)).toEqual(['draft.bin'])
    fs.renameSync(path.join(share, 'draft.bin'), path.join(share, 'final.bin'))
    const listed = await poll(ls, (l) => l.some((f) => f.name === 'final.bin' && f.holders === 1), 15_000)
    // one file (the same contents), under the name it is shared by now
    expect(listed).toEqual([expect.objectContaining({ name: 'final.bin', fileId: sha, holders: 1 })])
    const out = path.join(t.dir(), 'out')
    const get = await runLp2p(['get', 'final.bin', '--out', out, '--tracker', tracker, '--json'])
    expect(get.code).toBe(0)
    expect(await sha256File(path.join(out, 'final.bin'))).toBe(sha)
  })

  it('a download in progress goes on when its only holder renames the file (mv): nothing is withdrawn, the peer says renamed', async () => {
    const { address: tracker } = await startTracker(t.procs)
    const { share, sha } = shareRandom(t.dir(), 'share', 'ren.bin', 48 << 20)
    const { proc: peer } = await startPeer(t.procs, share, tracker)
    const out = path.join(t.dir(), 'out')
    // 48 MiB at 8 MB/s: about 6 s, the rename half-way through
    const get = await startGet(t.procs, 'ren.bin', out, tracker, { downloadLimit: '8M', until: (e) => e.event === 'progress' && (e.percent as number) >= 20 })
    fs.renameSync(path.join(share, 'ren.bin'), path.join(share, 'renamed.bin'))
    await peer.waitFor((e) => e.event === 'renamed', 15_000)
    expect(await get.exited).toBe(0)
    expect(await sha256File(path.join(out, 'ren.bin'))).toBe(sha)
    expect(get.events.filter((e) => e.event === 'peer-dropped')).toEqual([])
    expect(peer.events.filter((e) => e.event === 'withdrawn')).toEqual([])
    expect(peer.events).toContainEqual({ event: 'renamed', name: 'renamed.bin', from: 'ren.bin', fileId: sha })
    const ls = () => ask<Listed[]>(['ls', '--tracker', tracker])
    const listed = await poll(ls, (l) => l.some((f) => f.name === 'renamed.bin'), 15_000)
    expect(listed).toEqual([expect.objectContaining({ name: 'renamed.bin', fileId: sha, holders: expect.any(Number) })])
  })

  it('does not publish a file while it is still being written', async () => {
    const { address: tracker } = await startTracker(t.procs)
    const { share } = shareRandom(t.dir(), 'share', 'first.bin', 1 << 20)
    await startPeer(t.procs, share, tracker)
    const file = path.join(share, 'slow.bin')
    const chunk = Buffer.alloc(256 * 1024, 7)
    const seen: Listed[][] = []
    // 12 appends, 250 ms apart (3 s): never settled for the default 1 s. The appends run on a
    // timer of their own, so the `ls` processes asked meanwhile cannot stretch the gaps.
    let appended = 0
    const appender = setInterval(() => { if (appended < 12) { fs.appendFileSync(file, chunk); appended++ } }, 250)
    try {
      while (appended < 12) seen.push(await ask<Listed[]>(['ls', '--tracker', tracker]))
    } finally { clearInterval(appender) }
    const whole = 12 * chunk.length
    const listed = await poll(() => ask<Listed[]>(['ls', '--tracker', tracker]), (l) => l.some((f) => f.name === 'slow.bin'), 15_000)
    expect(seen.flat().filter((f) => f.name === 'slow.bin')).toEqual([])
    expect(listed.filter((f) => f.name === 'slow.bin')).toEqual([expect.objectContaining({ size: whole })])
  })

  it('--no-watch (or LP2P_WATCH=0) shares the folder as it was at start', async () => {
    const { address: tracker } = await startTracker(t.procs)
    const { share } = shareRandom(t.dir(), 'share', 'first.bin', 1 << 20)
    await startPeer(t.procs, share, tracker, ['--no-watch'])
    const env = spawnLp2p(['peer', '--share', share, '--tracker', tracker, '--json'], { LP2P_WATCH: '0' })
    t.procs.push(env)
    await listening(env, 60_000)
    writeRandomFile(path.join(share, 'late.bin'), 1 << 20)
    // a watching peer publishes in about a second; give these five
    await sleep(5000)
    expect((await ask<Listed[]>(['ls', '--tracker', tracker])).map((f) => f.name)).toEqual(['first.bin'])
  })
})
