import { execFileSync } from 'node:child_process'
import crypto, { createHash } from 'node:crypto'
import fs from 'node:fs'
import { lastValueFrom, tap } from 'rxjs'
import path from 'node:path'
import { Lp2pNode, type LeechEvent, type Lp2pNodeOptions, TrackerServer } from '../../src'
import { listShare, RESCAN_COST_FACTOR } from '../../src/peer/share'
import { runLp2p, tempDir } from './helpers'

/** What a spec started, stopped after it whatever its outcome (last started, first stopped). */
const started: Array<() => unknown> = []
afterEach(async () => { for (const stop of started.splice(0).reverse()) await stop() })
/** The node, then the tracker (read when the spec ends: it may have started another), then the folder. */
function stopAfter (dir: string, node: Lp2pNode, tracker: () => TrackerServer): void {
  started.push(() => fs.rmSync(dir, { recursive: true, force: true }), () => tracker().close(), async () => await node.close())
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** A fresh temporary folder holding a shared folder `s` with `files`. */
function folderWith (name: string, files: Record<string, Buffer>): { dir: string, share: string } {
  const dir = tempDir(name)
  const share = path.join(dir, 's')
  fs.mkdirSync(share)
  for (const [f, data] of Object.entries(files)) fs.writeFileSync(path.join(share, f), data)
  return { dir, share }
}

/** A tracker, a node sharing `files` and a second node to fetch them with (both stopped after the spec); `out`, where it fetches to. */
async function sharerAndGetter (name: string, files: Record<string, Buffer>, watch: Lp2pNodeOptions['watch'] = false): Promise<{ dir: string, share: string, tracker: TrackerServer, sharer: Lp2pNode, getter: Lp2pNode, out: string }> {
  const { dir, share } = folderWith(name, files)
  const tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
  const t = await tracker.start()
  const sharer = new Lp2pNode({ tracker: t, host: '127.0.0.1', share, watch })
  stopAfter(dir, sharer, () => tracker)
  await sharer.start()
  const getter = new Lp2pNode({ tracker: t, host: '127.0.0.1' })
  started.push(async () => await getter.close())
  await getter.start()
  return { dir, share, tracker, sharer, getter, out: path.join(dir, 'out') }
}

/** Wait (bounded) until `ok`; the last value. */
async function until<T> (read: () => T, ok: (t: T) => boolean, ms: number): Promise<T> {
  const end = Date.now() + ms
  let v = read()
  while (!ok(v) && Date.now() < end) { await sleep(100); v = read() }
  return v
}

/**
 * What the tracker lists for a node stays what the node holds when its folder changes by
 * hundreds of files at once, with a tracker that takes fewer datagrams a second from one address
 * than the node sends (the tracker's own limit, lowered here so a few hundred files are enough).
 */
describe('a node\'s files at a tracker that drops what an address sends past its rate', () => {
  it('300 files added at once are each published once (no re-publish of everything per heartbeat); removed at once, every one is withdrawn (lost withdraws are retried)', async () => {
    const dir = tempDir('node-book')
    const share = path.join(dir, 'share')
    fs.mkdirSync(share)
    fs.writeFileSync(path.join(share, 'keep.txt'), 'kept all along')
    const publishes = { n: 0 }
    let limited = 0
    const tracker = new TrackerServer({ host: '127.0.0.1', port: 0, ratePerSource: 40, observer: { request: (t) => { if (t === 'publish') publishes.n++ }, error: (k) => { if (k === 'rate_limited') limited++ } } })
    const t = await tracker.start()
    // (one try per request, 100 ms: a dropped datagram is a failed request at once)
    const node = new Lp2pNode({ tracker: t, host: '127.0.0.1', share, heartbeatMs: 300, trackerTimeoutMs: 100, trackerAttempts: 1, watch: { settleMs: 100, rescanMs: 500 } })
    const held = (): number => tracker.registry.listNodes(undefined, undefined, 10).find((n) => n.nodeId === node.nodeId)?.fileCount ?? -1
    stopAfter(dir, node, () => tracker)
    await node.start()
    expect(held()).toBe(1)
    const N = 300
    for (let i = 0; i < N; i++) fs.writeFileSync(path.join(share, `f${i}.txt`), `file ${i}`)
    expect(await until(held, (n) => n === N + 1, 40_000)).toBe(N + 1)
    // the tracker dropped some (it takes 40 a second, 80 at once), yet each file was handled about once
    expect(limited).toBeGreaterThan(0)
    expect(publishes.n).toBeLessThanOrEqual(1 + N + 30)
    await sleep(1000) // (heartbeats go on: nothing is published again)
    expect(publishes.n).toBeLessThanOrEqual(1 + N + 30)

    limited = 0
    for (let i = 0; i < N; i++) fs.unlinkSync(path.join(share, `f${i}.txt`))
    expect(await until(held, (n) => n === 1, 40_000)).toBe(1)
    expect(limited).toBeGreaterThan(0)
    expect(tracker.registry.holderCount(node.sharedFiles[0].fileId)).toBe(1)
  }, 120_000)
})

describe('a node whose withdraw was not heard', () => {
  it('a file removed while the tracker was away and put back is listed again once the tracker is back, and stays listed (no withdraw left over is sent)', async () => {
    const dir = tempDir('node-relist')
    const share = path.join(dir, 'share')
    fs.mkdirSync(share)
    fs.writeFileSync(path.join(share, 'keep.txt'), 'kept')
    fs.writeFileSync(path.join(share, 'back.txt'), 'back again')
    const withdraws: string[] = []
    const observer = { request: (t: string) => { if (t === 'withdraw') withdraws.push(t) } }
    let tracker = new TrackerServer({ host: '127.0.0.1', port: 0, observer })
    const t = await tracker.start()
    const node = new Lp2pNode({ tracker: t, host: '127.0.0.1', share, heartbeatMs: 300, trackerTimeoutMs: 100, trackerAttempts: 1, watch: { settleMs: 100, rescanMs: 200 } })
    stopAfter(dir, node, () => tracker)
    await node.start()
    const id = node.sharedFiles.find((f) => f.name === 'back.txt')?.fileId as string
    tracker.close() // away: the withdraw is lost
    fs.renameSync(path.join(share, 'back.txt'), path.join(dir, 'back.txt'))
    await until(() => node.sharedFiles.some((f) => f.fileId === id), (has) => !has, 10_000)
    fs.renameSync(path.join(dir, 'back.txt'), path.join(share, 'back.txt')) // put back (same contents)
    await until(() => node.sharedFiles.some((f) => f.fileId === id), (has) => has, 10_000)
    tracker = new TrackerServer({ host: '127.0.0.1', port: t.port, observer })
    await tracker.start()
    const holds = (): boolean => tracker.registry.holderCount(id) === 1
    expect(await until(holds, (h) => h, 10_000)).toBe(true)
    // listed from then on, beat after beat: no stale withdraw takes it away again
    for (let i = 0; i < 10; i++) { await sleep(150); expect(holds()).toBe(true) }
    expect(withdraws).toEqual([])
  }, 60_000)
})

describe('a node whose id another address took at the tracker', () => {
  it('takes a new id and publishes its files under it (it was kept out for as long as the other address held its id)', async () => {
    const dir = tempDir('node-id')
    const share = path.join(dir, 'share')
    fs.mkdirSync(share)
    fs.writeFileSync(path.join(share, 'mine.txt'), 'mine')
    const tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
    const t = await tracker.start()
    const node = new Lp2pNode({ tracker: t, host: '127.0.0.1', share, heartbeatMs: 200, watch: false })
    stopAfter(dir, node, () => tracker)
    await node.start()
    const first = node.nodeId
    const fileId = node.sharedFiles[0].fileId
    // the tracker forgets the node (a restart, a gap in its heartbeats), and another address claims its id first
    tracker.registry.expire(Date.now() + 60_000)
    tracker.registry.announce({ nodeId: first, host: '127.0.0.9', port: 9 }, 0, Date.now())
    const holder = (): string | undefined => tracker.registry.sampleNodes(fileId, 10)[0]?.nodeId
    expect(await until(holder, (h) => h !== undefined, 10_000)).toBe(node.nodeId)
    expect(node.nodeId).not.toBe(first)
  }, 30_000)
})

describe('a node following a big folder', () => {
  it('rescans it no more often than RESCAN_COST_FACTOR times what listing it takes (every 5 s, 10,000 files kept an idle peer at 10 % of a core)', async () => {
    const dir = tempDir('node-rescan')
    const share = path.join(dir, 'share')
    fs.mkdirSync(share)
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(share, `f${i}.txt`), String(i))
    const listedAt = performance.now()
    await listShare(share)
    const listMs = performance.now() - listedAt
    const tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
    const t = await tracker.start()
    // a 20 ms period asked for: at least 25 × the listing's time is taken
    const node = new Lp2pNode({ tracker: t, host: '127.0.0.1', share, watch: { settleMs: 100, rescanMs: 20 } })
    const readdir = jest.spyOn(fs.promises, 'readdir')
    stopAfter(dir, node, () => tracker)
    started.push(() => { readdir.mockRestore() })
    await node.start()
    const from = readdir.mock.calls.length
    await sleep(4000)
    const scans = readdir.mock.calls.slice(from).filter((c) => c[0] === share).length
    // (every 20 ms plus the listing itself was about 4000 / (20 + listMs) scans: dozens)
    expect(scans).toBeGreaterThan(0)
    expect(scans).toBeLessThanOrEqual(Math.max(4, Math.ceil(4000 / (RESCAN_COST_FACTOR * listMs / 3))))
    expect(scans).toBeLessThan(4000 / (20 + listMs) / 3)
  }, 60_000)
})

describe('a node at a full tracker', () => {
  it('a file refused for fairness (FULL) is not counted as listed: the node does not publish its whole share again with every heartbeat', async () => {
    const dir = tempDir('full')
    const shareA = path.join(dir, 'a'); const shareB = path.join(dir, 'b')
    fs.mkdirSync(shareA); fs.mkdirSync(shareB)
    for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(shareA, `f${i}.txt`), `file ${i}`)
    fs.writeFileSync(path.join(shareB, 'b.txt'), 'the small host\'s file')
    // a registry of 6 files: A's six fill it, and B's one takes the place of one of them
    const tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
    ;(tracker.registry as unknown as { maxFiles: number }).maxFiles = 6
    const t = await tracker.start()
    const reg = tracker.registry as unknown as { publish: (node: { host: string }, ...rest: unknown[]) => unknown }
    const publish = reg.publish.bind(reg)
    const publishes: Record<string, number> = {}
    reg.publish = (node, ...rest) => { publishes[node.host] = (publishes[node.host] ?? 0) + 1; return publish(node, ...rest) }
    const a = new Lp2pNode({ tracker: t, host: '127.0.0.1', share: shareA, heartbeatMs: 300, watch: { settleMs: 100, rescanMs: 60_000 } })
    stopAfter(dir, a, () => tracker)
    await a.start()
    const b = new Lp2pNode({ tracker: t, host: '127.0.0.2', share: shareB, heartbeatMs: 300, watch: { settleMs: 100, rescanMs: 60_000 } })
    started.push(async () => await b.close())
    await b.start()
    expect(tracker.registry.files.size).toBe(6)
    expect(tracker.registry.listNodes(undefined, undefined, 10).map((n) => [n.host, n.fileCount]).sort()).toEqual([['127.0.0.1', 5], ['127.0.0.2', 1]])
    await sleep(500)
    const settled = publishes['127.0.0.1']
    await sleep(3000) // ten heartbeats
    // (before: all six each beat, about sixty; now the refused one waits FULL_RETRY_MS)
    expect(publishes['127.0.0.1'] - settled).toBeLessThan(3)
  }, 30_000)
})

describe('a node the tracker lists under another root', () => {
  it('offers its root again now and then (not with every heartbeat) until the tracker takes it: the junk root of a squatter that published first and left is replaced', async () => {
    const data = Buffer.alloc(300_000, 7)
    const { dir, share } = folderWith('root', { 'x.bin': data })
    const fileId = createHash('sha256').update(data).digest('hex')
    const tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
    const t = await tracker.start()
    const reg = tracker.registry as unknown as { publish: (node: { host: string }, ...rest: unknown[]) => unknown }
    const publish = reg.publish.bind(reg)
    let publishes = 0
    reg.publish = (node, ...rest) => { if (node.host === '127.0.0.1') publishes++; return publish(node, ...rest) }
    // the squatter, at another address: the id first, then a junk root with the tracker's segmentation
    const squatter = { nodeId: 'f'.repeat(32), host: '10.9.9.9', port: 1 }
    const junk = '11'.repeat(32)
    const { blockSize } = tracker.registry.publish(squatter, { name: 'x.bin', hash: fileId, size: data.length }, Date.now())
    tracker.registry.publish(squatter, { name: 'x.bin', hash: fileId, size: data.length, blockSize, root: junk }, Date.now())
    const node = new Lp2pNode({ tracker: t, host: '127.0.0.1', share, heartbeatMs: 100, publishRetryMs: 1000, watch: { settleMs: 100, rescanMs: 60_000 } })
    stopAfter(dir, node, () => tracker)
    await node.start()
    const first = publishes
    await sleep(2000) // twenty heartbeats; the squatter is live: its root stands
    expect(tracker.registry.files.get(fileId)?.root).toBe(junk)
    expect(publishes - first).toBeGreaterThanOrEqual(1)
    expect(publishes - first).toBeLessThanOrEqual(3)
    tracker.registry.leave(squatter, Date.now())
    const root = await until(() => tracker.registry.files.get(fileId)?.root, (r) => r !== junk, 5000)
    expect(root).not.toBe(junk)
    expect(root).toMatch(/^[0-9a-f]{64}$/)
  }, 30_000)
})

describe('a shared file whose ctime alone changed', () => {
  /** A watching node (rescans every 200 ms) sharing `files` of `dir/s`, with a fresh tracker; its share events as they come. */
  async function watching (name: string, files: Record<string, Buffer>): Promise<{ dir: string, share: string, tracker: TrackerServer, node: Lp2pNode, events: Array<{ event: string, name: string, fileId?: string }> }> {
    const { dir, share } = folderWith(name, files)
    const tracker = new TrackerServer({ host: '127.0.0.1', port: 0 })
    const t = await tracker.start()
    const node = new Lp2pNode({ tracker: t, host: '127.0.0.1', share, heartbeatMs: 300, watch: { settleMs: 100, rescanMs: 200 } })
    stopAfter(dir, node, () => tracker)
    const events: Array<{ event: string, name: string, fileId?: string }> = []
    node.shareChanges$.subscribe((e) => events.push(e as { event: string, name: string, fileId?: string }))
    await node.start()
    return { dir, share, tracker, node, events }
  }

  it('a chmod or a hard link (the contents unchanged) withdraws nothing; a rewrite in place with its size and mtime set back is withdrawn and shared under its new id', async () => {
    const { dir, share, tracker, events } = await watching('ctime', { 'a.bin': Buffer.alloc(200_000, 1), 'b.bin': Buffer.alloc(200_000, 2) })
    const a = path.join(share, 'a.bin')
    const idA = createHash('sha256').update(fs.readFileSync(a)).digest('hex')
    fs.chmodSync(a, 0o600)
    fs.linkSync(path.join(share, 'b.bin'), path.join(dir, 'backup-of-b.bin')) // (outside the share: a backup tool, cp -al)
    await sleep(1500) // several rescans, settled
    expect(events).toEqual([])
    // the same size, the mtime set back exactly (touch -r: utimes with Dates loses the sub-ms part): only the ctime tells
    const times = path.join(dir, 'times')
    fs.writeFileSync(times, '')
    execFileSync('touch', ['-r', a, times])
    const fd = fs.openSync(a, 'r+')
    fs.writeSync(fd, Buffer.alloc(10, 9), 0, 10, 1000)
    fs.closeSync(fd)
    execFileSync('touch', ['-r', times, a])
    const idA2 = createHash('sha256').update(fs.readFileSync(a)).digest('hex')
    await until(() => events.length, (n) => n >= 2, 5000)
    expect(events).toEqual([expect.objectContaining({ event: 'withdrawn', name: 'a.bin', fileId: idA, reason: expect.stringMatching(/was changed in place/) }), expect.objectContaining({ event: 'shared', name: 'a.bin', fileId: idA2 })])
    expect(tracker.registry.holderCount(idA2)).toBe(1)
  }, 30_000)

  it('a recheck that finds the file withdrawn meanwhile (the server found it changed) leaves it to the next scans, which share it again; it does not mark it shared', async () => {
    const { share, node } = await watching('stale-known', { 'a.bin': Buffer.alloc(8 << 20, 1) })
    const a = path.join(share, 'a.bin')
    const id = node.sharedFiles[0].fileId
    const n = node as unknown as { recheckShared: (e: unknown) => Promise<unknown>, withdraw: (id: string, err: Error) => void, known: Map<string, { shared: boolean }> }
    const [e] = await listShare(share)
    const rechecked = n.recheckShared(e) // (what a scan does for a file whose ctime alone changed)
    n.withdraw(id, new Error('served file was replaced by another file')) // (the piece server, meanwhile)
    await rechecked
    const back = await until(() => node.sharedFiles.map((f) => f.fileId), (ids) => ids.length > 0, 5000)
    expect({ known: n.known.get(a)?.shared, sharing: back }).toEqual({ known: true, sharing: [id] })
  }, 30_000)

  it('an identical copy moved over a shared file (another inode, the same size and times) is withdrawn and shared again from the new file: the old one is not kept open', async () => {
    const { dir, share, node, events } = await watching('inode', { 'a.bin': Buffer.alloc(200_000, 1) })
    const a = path.join(share, 'a.bin')
    const tmp = path.join(dir, 'copy.tmp')
    fs.writeFileSync(tmp, Buffer.alloc(200_000, 1))
    execFileSync('touch', ['-r', a, tmp])
    fs.renameSync(tmp, a)
    await until(() => events.length, (k) => k >= 2, 5000)
    expect(events.map((ev) => ev.event)).toEqual(['withdrawn', 'shared'])
    const deleted = fs.readdirSync('/proc/self/fd').map((fd) => { try { return fs.readlinkSync(`/proc/self/fd/${fd}`) } catch { return '' } }).filter((l) => l === `${a} (deleted)`)
    expect(deleted).toEqual([])
    expect((node.sharedFiles[0].file as unknown as { ino: number }).ino).toBe(fs.statSync(a).ino)
  }, 30_000)
})

describe('a get of a file already verified at its place', () => {
  /** This process's descriptors open on `p`. */
  const openOn = (p: string): number => fs.readdirSync('/proc/self/fd').filter((fd) => { try { return fs.readlinkSync(`/proc/self/fd/${fd}`) === p } catch { return false } }).length

  it('the same file asked again under its id prefix is done at once and keeps one mapping; one stopped while it hashes the copy keeps none; the node closed, none is left', async () => {
    const small = crypto.randomBytes(3_000_000)
    const big = crypto.randomBytes(48 << 20)
    const { getter, out } = await sharerAndGetter('here', { 'small.bin': small, 'big.bin': big })
    const id = createHash('sha256').update(small).digest('hex')
    const first = await lastValueFrom(getter.leech('small.bin', out))
    expect(first).toMatchObject({ event: 'done', downloaded: small.length })
    const again = await lastValueFrom(getter.leech(id.slice(0, 10), out))
    expect(again).toMatchObject({ event: 'done', name: 'small.bin', downloaded: 0 })
    expect(openOn(path.join(out, 'small.bin'))).toBe(1)
    // a verified copy of big.bin already there: the get is stopped while it hashes it
    fs.writeFileSync(path.join(out, 'big.bin'), big)
    const s = getter.leech('big.bin', out).subscribe({ error: () => {} })
    await sleep(25)
    s.unsubscribe()
    await sleep(500)
    expect(openOn(path.join(out, 'big.bin'))).toBe(0)
    await getter.close()
    expect(openOn(path.join(out, 'small.bin'))).toBe(0)
  }, 60_000)
})

describe('several names resolved in one listing', () => {
  it('a file changed at its sharer after the listing was taken is fetched in its new version (the listing\'s old id, held by no one, ended the get with exit 6)', async () => {
    const { share, tracker, sharer, getter, out } = await sharerAndGetter('stale', { 'a.bin': crypto.randomBytes(100_000), 'b.bin': crypto.randomBytes(100_000) }, { settleMs: 100, rescanMs: 300 })
    const listing = getter.sharedListing()
    expect(await lastValueFrom(getter.leech('a.bin', out, { listing }))).toMatchObject({ event: 'done' })
    // b.bin changes: the sharer publishes the new version and withdraws the old
    const before = sharer.sharedFiles.find((f) => f.name === 'b.bin')?.fileId
    const now = crypto.randomBytes(120_000)
    fs.writeFileSync(path.join(share, 'b.bin'), now)
    const after = await until(() => sharer.sharedFiles.find((f) => f.name === 'b.bin')?.fileId, (id) => id !== undefined && id !== before, 15_000)
    expect(after).toBe(createHash('sha256').update(now).digest('hex'))
    await until(() => tracker.registry.holderCount(before as string), (n) => n === 0, 15_000)
    const done = await lastValueFrom(getter.leech('b.bin', out, { listing }))
    expect(done).toMatchObject({ event: 'done', fileId: after })
    expect(fs.readFileSync(path.join(out, 'b.bin'))).toEqual(now)
  }, 60_000)
})

describe('several names resolved in one listing, their holder gone', () => {
  it('a name whose only holder left fails once, not twice (resolved again, it is the same version: no second round)', async () => {
    const { sharer, getter, out } = await sharerAndGetter('gone', { 'a.bin': crypto.randomBytes(50_000), 'b.bin': crypto.randomBytes(50_000) })
    const listing = getter.sharedListing()
    expect(await lastValueFrom(getter.leech('a.bin', out, { listing }))).toMatchObject({ event: 'done' })
    await sharer.close() // (it leaves the tracker: b.bin is held by no one; the listing kept says one)
    const events: LeechEvent[] = []
    await expect(lastValueFrom(getter.leech('b.bin', out, { listing }).pipe(tap((e) => events.push(e))))).rejects.toMatchObject({ code: 'ERR_NO_SOURCES' })
    expect(events.filter((e) => e.event === 'start')).toHaveLength(1)
  }, 60_000)
})

describe('a get stopped while it named its file', () => {
  it('leaves working files a later get of it removes once it finds the verified copy (they stayed for good: the copy is done at once, no .part opened)', async () => {
    const data = crypto.randomBytes(2_000_000)
    const { getter, out } = await sharerAndGetter('tidy', { 'd.bin': data })
    expect(await lastValueFrom(getter.leech('d.bin', out))).toMatchObject({ event: 'done', downloaded: data.length })
    const id = createHash('sha256').update(data).digest('hex')
    const final = path.join(out, 'd.bin')
    // a dead get's lock (a pid that cannot be running), and its state naming this file
    const leftovers = (withPart: boolean): void => {
      if (withPart) fs.linkSync(final, `${final}.part`) // (stopped between linking and unlinking)
      fs.writeFileSync(`${final}.part.state`, JSON.stringify({ fileId: id, size: data.length, blockSize: 1, pieces: 1, have: '' }))
      fs.writeFileSync(`${final}.part.lock`, '2147483646 deadbeef\n')
    }
    for (const withPart of [true, false]) {
      leftovers(withPart)
      expect(await lastValueFrom(getter.leech('d.bin', out))).toMatchObject({ event: 'done', downloaded: 0 })
      expect(fs.readdirSync(out)).toEqual(['d.bin'])
      expect(createHash('sha256').update(fs.readFileSync(final)).digest('hex')).toBe(id)
    }
    // another version's .part (another file) and a state naming another file are not touched
    fs.writeFileSync(`${final}.part`, 'another download')
    fs.writeFileSync(`${final}.part.state`, JSON.stringify({ fileId: 'ee'.repeat(32) }))
    expect(await lastValueFrom(getter.leech('d.bin', out))).toMatchObject({ event: 'done', downloaded: 0 })
    expect(fs.readdirSync(out).sort()).toEqual(['d.bin', 'd.bin.part', 'd.bin.part.state'])
  }, 60_000)
})

describe('a get of several names at a tracker of many files', () => {
  it('resolves them in one listing of the tracker\'s files (every page of it was listed again for each name)', async () => {
    const N = 400
    const files: Record<string, Buffer> = {}
    for (let i = 0; i < N; i++) files[`f${i}.txt`] = Buffer.from(`file number ${i}`)
    const { dir, share } = folderWith('listing', files)
    let listed = 0
    const tracker = new TrackerServer({ host: '127.0.0.1', port: 0, observer: { request: (t) => { if (t === 'query_files') listed++ } } })
    const t = await tracker.start()
    const sharer = new Lp2pNode({ tracker: t, host: '127.0.0.1', share, watch: false })
    stopAfter(dir, sharer, () => tracker)
    await sharer.start()
    const at = `127.0.0.1:${t.port}`
    // the datagrams one listing takes
    expect((await runLp2p(['ls', '--tracker', at, '--json'])).events[0]).toHaveLength(N)
    const pages = listed
    expect(pages).toBeGreaterThan(1)
    listed = 0
    const names = Array.from({ length: 12 }, (_, i) => `f${i * 31}.txt`)
    const get = await runLp2p(['get', ...names, '--out', path.join(dir, 'out'), '--tracker', at, '--json'])
    expect(get.code).toBe(0)
    expect(get.events.filter((e) => e.event === 'done').map((e) => e.name)).toEqual(names)
    for (const n of names) expect(fs.readFileSync(path.join(dir, 'out', n))).toEqual(files[n])
    expect(listed).toBe(pages)
  }, 60_000)
})
