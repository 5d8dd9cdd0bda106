import dgram from 'node:dgram'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { oneSeeder, perTest, runLp2p, sha256File, shareRandom, spawnLp2p, startPeer, startTracker } from './helpers'

/** What a user sees from real processes on 127.0.0.1: plain progress when piped, env-only config, status events, signals. */
describe('CLI output of real processes', () => {
  const { procs, dir } = perTest('cli')
  /** A UDP port on 127.0.0.1 that answers nothing (closed after the spec): a tracker that does not answer. */
  const silentTracker = (): Promise<string> => new Promise<string>((resolve) => {
    const s = dgram.createSocket('udp4')
    procs.push({ stop: async () => { s.close() } } as unknown as typeof procs[number])
    s.bind(0, '127.0.0.1', () => resolve(`127.0.0.1:${s.address().port}`))
  })
  const F = 16 * 1024 * 1024

  it('get piped (not a terminal), configured only by LP2P_* variables: plain lines, no escape codes, exit 0; the peer reports what it served', async () => {
    const { sha, tracker, peer } = await oneSeeder(procs, dir(), 'share', 'plain.bin', F)
    const out = path.join(dir(), 'out')
    const get = spawnLp2p(['get', 'plain.bin'], { LP2P_TRACKER: tracker, LP2P_OUT: out, LP2P_JSON: '0', LP2P_LOG_FORMAT: 'auto' })
    procs.push(get)
    expect(await get.exited).toBe(0)
    await new Promise((r) => setImmediate(r))
    const lines = get.events.map((e) => e.line as string)
    expect(lines.every((l) => typeof l === 'string')).toBe(true) // nothing was JSON
    expect(lines.join('\n')).not.toMatch(/[\x1b\r]/)
    expect(lines[0]).toMatch(/^plain\.bin: 16\.0 MiB in \d+ piece\(s\)$/)
    expect(lines.some((l) => /^plain\.bin {2}\s*\d+\.\d% {2}.* MiB \/ 16\.0 MiB {2}.*\/s {2}ETA \S+ {2}peers \d+\/\d+$/.test(l))).toBe(true)
    expect(lines).toContain(`plain.bin: 16.0 MiB verified, sha256 ${sha}`)
    expect(get.stderr.filter((l) => !l.startsWith('{'))).toEqual([]) // logs piped stay JSON
    expect(await sha256File(path.join(out, 'plain.bin'))).toBe(sha)

    // peer --json: `serving` events every 2 s, counting what was sent
    const served = await peer.proc.waitFor((e) => e.event === 'serving' && (e.uploaded as number) >= F, 10_000)
    expect(served).toMatchObject({ files: 1, uploaded: expect.any(Number), connections: expect.any(Number), rate: expect.any(Number) })
  }, 90_000)

  it('a get that finished and a peer stopped by SIGTERM leave the tracker at once (not a node TTL later); ls and status, never listed, send no leave', async () => {
    const { tracker, peer } = await oneSeeder(procs, dir(), 'share', 'leave.bin', 1 << 20)
    const trackerProc = procs[0]
    const status = async (): Promise<{ nodeId: string }[]> => {
      const r = await runLp2p(['status', '--tracker', tracker, '--json'])
      expect(r.code).toBe(0)
      return r.events[0] as unknown as { nodeId: string }[]
    }
    const seeder = (peer.proc.events.find((e) => e.event === 'listening') as { nodeId: string }).nodeId
    const get = await runLp2p(['get', 'leave.bin', '--out', path.join(dir(), 'out'), '--tracker', tracker, '--json'])
    expect(get.code).toBe(0)
    // the get published what it held while it fetched; it is gone as soon as it exited
    expect((await status()).map((n) => n.nodeId)).toEqual([seeder])
    await peer.proc.stop()
    expect(await status()).toEqual([])
    expect((await runLp2p(['ls', '--tracker', tracker, '--json'])).code).toBe(0)
    // every datagram the tracker got was well formed (a leave from a node with no port is not)
    await new Promise((r) => setTimeout(r, 200))
    expect(trackerProc.stderr.filter((l) => l.includes('malformed'))).toEqual([])
  }, 90_000)

  it('get with several names fetches each in turn, verified; one that fails is said on stderr, the others still come, and the status is the first failure\'s', async () => {
    const a = shareRandom(dir(), 'share', 'a.bin', 1 << 20)
    const b = shareRandom(dir(), 'share', 'b.bin', 3 << 20)
    const { address: tracker } = await startTracker(procs)
    await startPeer(procs, a.share, tracker)
    const out = path.join(dir(), 'out')
    const get = await runLp2p(['get', 'a.bin', 'nothing.bin', b.sha.slice(0, 12), 'a.bin', '--out', out, '--tracker', tracker, '--json'])
    expect(get.code).toBe(3) // (not found: the first failure)
    expect(await sha256File(path.join(out, 'a.bin'))).toBe(a.sha)
    expect(await sha256File(path.join(out, 'b.bin'))).toBe(b.sha)
    expect(get.events.filter((e) => e.event === 'done').map((e) => e.name)).toEqual(['a.bin', 'b.bin']) // (a.bin asked twice: fetched once)
    expect(get.events.filter((e) => e.event === 'error')).toEqual([expect.objectContaining({ code: 'ERR_NOT_FOUND', query: 'nothing.bin' })])
    expect(get.stderr.filter((l) => !l.startsWith('{'))).toEqual([expect.stringMatching(/^lp2p: nothing\.bin: /)])

    // the same get again (as after an interruption), and a.bin under its id too: what is there,
    // verified, is done at once, nothing fetched; a file of that name with other bytes is refused
    fs.writeFileSync(path.join(out, 'other.bin'), 'not it')
    const again = await runLp2p(['get', 'a.bin', b.sha.slice(0, 12), a.sha.slice(0, 10), '--out', out, '--tracker', tracker, '--json'])
    expect(again.code).toBe(0)
    expect(again.events.filter((e) => e.event === 'done').map((e) => [e.name, e.downloaded])).toEqual([['a.bin', 0], ['b.bin', 0], ['a.bin', 0]])
    fs.writeFileSync(path.join(out, 'b.bin'), 'other bytes')
    const taken = await runLp2p(['get', 'b.bin', '--out', out, '--tracker', tracker, '--json'])
    expect(taken.code).toBe(8)
    expect(fs.readFileSync(path.join(out, 'b.bin'), 'utf8')).toBe('other bytes')
  }, 90_000)

  it('a shared folder tree is fetched as a tree: files named by their path (one base name in two folders is two files), a folder by its name and a slash; hidden folders are not shared', async () => {
    const share = path.join(dir(), 'share')
    for (const d of ['train/sub', 'val', '.git']) fs.mkdirSync(path.join(share, d), { recursive: true })
    const t1 = shareRandom(dir(), 'share', 'train/0001.png', 300_000)
    const t2 = shareRandom(dir(), 'share', 'train/sub/0001.png', 1 << 20)
    const v1 = shareRandom(dir(), 'share', 'val/0001.png', 200_000)
    fs.writeFileSync(path.join(share, '.git', 'HEAD'), 'ref: refs/heads/main')
    const { address: tracker } = await startTracker(procs)
    await startPeer(procs, share, tracker)
    const ls = await runLp2p(['ls', '--tracker', tracker, '--json'])
    const names = (r: { events: unknown[] }): string[] => (r.events[0] as Array<{ name: string }>).map((f) => f.name)
    expect(names(ls)).toEqual(['train/0001.png', 'train/sub/0001.png', 'val/0001.png']) // (by name)
    // ls of a folder (with or without its slash): the files in it and its subfolders
    expect(names(await runLp2p(['ls', 'train', '--tracker', tracker, '--json']))).toEqual(['train/0001.png', 'train/sub/0001.png'])
    expect(names(await runLp2p(['ls', 'train/sub/', '--tracker', tracker, '--json']))).toEqual(['train/sub/0001.png'])
    expect((await runLp2p(['ls', 'tra', '--tracker', tracker])).events).toEqual([{ line: 'no files' }]) // (a folder is a whole part)
    const out = path.join(dir(), 'out')
    const get = await runLp2p(['get', 'train/', 'val/0001.png', '--out', out, '--tracker', tracker, '--json'])
    expect(get.code).toBe(0)
    expect(get.events.filter((e) => e.event === 'done').map((e) => [e.name, e.path])).toEqual([
      ['train/0001.png', path.join(out, 'train', '0001.png')], ['train/sub/0001.png', path.join(out, 'train', 'sub', '0001.png')], ['val/0001.png', path.join(out, 'val', '0001.png')],
    ])
    expect(await sha256File(path.join(out, 'train', '0001.png'))).toBe(t1.sha)
    expect(await sha256File(path.join(out, 'train', 'sub', '0001.png'))).toBe(t2.sha)
    expect(await sha256File(path.join(out, 'val', '0001.png'))).toBe(v1.sha)
    expect(fs.readdirSync(out).sort()).toEqual(['train', 'val'])
    expect(fs.readdirSync(path.join(out, 'train')).sort()).toEqual(['0001.png', 'sub'])
    // a base name alone, a folder without its slash, an empty folder: exit 3, saying what is there
    const bare = await runLp2p(['get', '0001.png', '--out', out, '--tracker', tracker])
    expect(bare.code).toBe(3)
    expect(bare.stderr.filter((l) => !l.startsWith('{'))).toEqual(['lp2p: no file named or with id prefix "0001.png" (files in folders are named by their path: "train/0001.png", "train/sub/0001.png", "val/0001.png")'])
    const folder = await runLp2p(['get', 'val', '--out', out, '--tracker', tracker])
    expect(folder.code).toBe(3)
    expect(folder.stderr.filter((l) => !l.startsWith('{'))).toEqual(['lp2p: no file named or with id prefix "val" (a folder: `get val/` fetches the files in it)'])
    const none = await runLp2p(['get', 'test/', 'val/', '--out', path.join(dir(), 'out2'), '--tracker', tracker, '--json'])
    expect(none.code).toBe(3)
    expect(none.events.filter((e) => e.event === 'error')).toEqual([expect.objectContaining({ code: 'ERR_NOT_FOUND', query: 'test/', message: 'no file in folder "test/"' })])
    expect(await sha256File(path.join(dir(), 'out2', 'val', '0001.png'))).toBe(v1.sha)
    // a file deleted at its sharer stays listed, held by no one: a folder get says so and fetches the rest (it tried it, and failed, exit 6)
    fs.rmSync(t1.file)
    const holders = async (): Promise<number | undefined> => ((await runLp2p(['ls', 'train/', '--tracker', tracker, '--json'])).events[0] as unknown as Array<{ name: string, holders: number }>).find((f) => f.name === 'train/0001.png')?.holders
    for (let i = 0; i < 60 && await holders() !== 0; i++) await new Promise((r) => setTimeout(r, 250))
    const rest = await runLp2p(['get', 'train/', '--out', path.join(dir(), 'out3'), '--tracker', tracker, '--json'])
    expect(rest.code).toBe(0)
    expect(rest.events.filter((e) => e.event === 'done').map((e) => e.name)).toEqual(['train/sub/0001.png'])
    expect(rest.stderr.filter((l) => !l.startsWith('{'))).toEqual(['lp2p: train/: 1 listed there is held by no live node (old versions, or deleted at their sharer): not fetched'])
  }, 90_000)

  it('get with several names and the tracker down gives up once (exit 5), naming the names not fetched, not after every name\'s tries', async () => {
    const silent = await silentTracker()
    const started = Date.now()
    const get = await runLp2p(['get', 'a.bin', 'b.bin', 'c.bin', '--out', path.join(dir(), 'out'), '--tracker', silent])
    expect(get.code).toBe(5)
    expect(Date.now() - started).toBeLessThan(15_000) // (one name's tries: about 8 s; three: 24 s)
    expect(get.stderr.filter((l) => !l.startsWith('{'))).toEqual([expect.stringMatching(/^lp2p: a\.bin: /), 'lp2p: not fetched (the tracker does not answer): b.bin c.bin'])
  }, 60_000)

  it('a tracker on IPv6 loopback (::1): peer, get, ls and status reach it with no --host (they bind the address they reach it from)', async () => {
    const { share, sha } = shareRandom(dir(), 'share', 'six.bin', 1 << 20)
    const { address: tracker } = await startTracker(procs, ['--memory', '--host', '::1'])
    expect(tracker).toMatch(/^\[::1\]:\d+$/)
    const peer = await startPeer(procs, share, tracker)
    expect(peer.address).toMatch(/^\[::1\]:\d+$/)
    const ls = await runLp2p(['ls', '--tracker', tracker, '--json'])
    expect(ls.code).toBe(0)
    expect(ls.events[0]).toMatchObject([{ name: 'six.bin', fileId: sha, holders: 1 }])
    const out = path.join(dir(), 'out')
    const get = await runLp2p(['get', 'six.bin', '--out', out, '--tracker', tracker, '--json'])
    expect(get.code).toBe(0)
    expect(await sha256File(path.join(out, 'six.bin'))).toBe(sha)
    const status = await runLp2p(['status', '--tracker', tracker, '--json'])
    expect(status.code).toBe(0)
    expect((status.events[0] as unknown as { address: string }[]).map((n) => n.address)).toEqual([peer.address])
  }, 90_000)

  it('demo (the README\'s first command) verifies its download and removes its folder, also for an empty file and when interrupted (130)', async () => {
    const tmp = path.join(dir(), 'tmp')
    fs.mkdirSync(tmp)
    const demo = async (args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, lines: string[] }> => {
      const d = spawnLp2p(['demo', ...args], { TMPDIR: tmp, ...env })
      procs.push(d)
      const code = await d.exited
      await new Promise((r) => setImmediate(r))
      return { code, lines: d.events.map((e) => e.line as string) }
    }
    // the user's variables are for the user's commands, not the demo's swarm (LP2P_SEED kept its get seeding for good)
    const ok = await demo(['--size', '1M', '--peers', '2'], { LP2P_SEED: '1', LP2P_DOWNLOAD_LIMIT: '1k', LP2P_MEMORY: '1' })
    expect(ok.code).toBe(0)
    expect(ok.lines).toEqual(expect.arrayContaining([expect.stringMatching(/^get {6}1\.00 MiB from [12] peer\(s\) in /), expect.stringMatching(/^sha256 {3}[0-9a-f]{64} = original ✓$/)]))
    const empty = await demo(['--size', '0', '--peers', '1'])
    expect(empty.code).toBe(0)
    expect(empty.lines).toEqual(expect.arrayContaining([expect.stringMatching(/^get {6}0 B from 0 peer\(s\) in /)]))
    expect(fs.readdirSync(tmp)).toEqual([])

    const d = spawnLp2p(['demo', '--size', '16M', '--peers', '2'], { TMPDIR: tmp })
    procs.push(d)
    await d.waitFor((e) => typeof e.line === 'string' && e.line.startsWith('peer 1'), 60_000)
    expect(fs.readdirSync(tmp)).toHaveLength(1)
    d.child.kill('SIGINT')
    expect(await d.exited).toBe(130)
    await new Promise((r) => setImmediate(r))
    expect(d.events.map((e) => e.line)).toContain('interrupted: stopping the swarm')
    expect(fs.readdirSync(tmp)).toEqual([])
  }, 120_000)

  it('a get stopped by SIGINT ends its display with an error event, keeps the .part and exits 130', async () => {
    const { tracker } = await oneSeeder(procs, dir(), 'share', 'slow.bin', F)
    const out = path.join(dir(), 'out')
    const get = spawnLp2p(['get', 'slow.bin', '--out', out, '--tracker', tracker, '--download-limit', '4M', '--json'])
    procs.push(get)
    await get.waitFor((e) => e.event === 'progress' && (e.bytes as number) > 0, 30_000)
    get.child.kill('SIGINT')
    expect(await get.exited).toBe(130)
    await new Promise((r) => setImmediate(r))
    expect(get.events.at(-1)).toMatchObject({ event: 'error', code: 'ERR_INTERRUPTED' })
    expect(get.stderr.filter((l) => !l.startsWith('{'))).toEqual(['lp2p: interrupted by SIGINT; the same get resumes from the pieces verified so far'])
    expect(fs.existsSync(path.join(out, 'slow.bin.part'))).toBe(true)
  }, 90_000)

  it('a get stopped before anything was fetched (its tracker silent) says so, not that it resumes', async () => {
    const silent = await silentTracker()
    const get = spawnLp2p(['get', 'a.bin', '--out', path.join(dir(), 'out'), '--tracker', silent])
    procs.push(get)
    await new Promise((r) => setTimeout(r, 1500))
    get.child.kill('SIGINT')
    expect(await get.exited).toBe(130)
    expect(get.stderr.filter((l) => !l.startsWith('{'))).toEqual(['lp2p: interrupted by SIGINT; nothing was fetched yet'])
  }, 30_000)

  it('stdout closed by its reader (`| head`): --help ends quietly; a peer and a get stop as SIGPIPE would (141), the .part kept', async () => {
    // the read end closes before the child writes: its first write fails with EPIPE
    const help = spawnLp2p(['--help']) // (the root help: it crashed with EPIPE before; a command's shorter one did not)
    procs.push(help)
    help.child.stdout?.destroy()
    expect(await help.exited).toBe(0)
    await new Promise((r) => setImmediate(r))
    expect(help.stderr).toEqual([])

    const { tracker, peer } = await oneSeeder(procs, dir(), 'share', 'pipe.bin', F)
    const out = path.join(dir(), 'out')
    const get = spawnLp2p(['get', 'pipe.bin', '--out', out, '--tracker', tracker, '--download-limit', '4M', '--json'])
    procs.push(get)
    await get.waitFor((e) => e.event === 'progress' && (e.bytes as number) > 0, 30_000)
    get.child.stdout?.destroy() // its next progress line meets a closed pipe
    expect(await get.exited).toBe(141)
    await new Promise((r) => setImmediate(r))
    expect(get.stderr.filter((l) => !l.startsWith('{'))).toEqual(['lp2p: interrupted by SIGPIPE (stdout closed); the same get resumes from the pieces verified so far'])
    expect(fs.existsSync(path.join(out, 'pipe.bin.part'))).toBe(true)

    peer.proc.child.stdout?.destroy() // its next `serving` event (every 2 s) meets a closed pipe
    expect(await peer.proc.exited).toBe(141)
    await new Promise((r) => setImmediate(r))
    expect(peer.proc.stderr.filter((l) => !l.startsWith('{'))).toEqual([])
  }, 90_000)

  it('stdout that cannot be written (`> /dev/full`): ls, --help, a get and a peer say so in one line and stop with status 1, no stack trace, no lock left', async () => {
    const full = fs.openSync('/dev/full', 'w')
    try {
      const run = async (args: string[]): Promise<{ code: number | null, stderr: string[] }> => {
        const p = spawnLp2p(args, {}, full)
        procs.push(p)
        const code = await p.exited
        await new Promise((r) => setImmediate(r))
        return { code, stderr: p.stderr.filter((l) => !l.startsWith('{')) }
      }
      const cannot = 'lp2p: cannot write to stdout: ENOSPC: no space left on device, write'
      expect(await run(['--help'])).toEqual({ code: 1, stderr: [cannot] })
      const { tracker } = await oneSeeder(procs, dir(), 'share', 'full.bin', F)
      expect(await run(['ls', '--tracker', tracker])).toEqual({ code: 1, stderr: [cannot] })
      const out = path.join(dir(), 'out')
      const get = await run(['get', 'full.bin', '--out', out, '--tracker', tracker, '--download-limit', '4M'])
      expect(get.code).toBe(1)
      expect(get.stderr[0]).toBe(cannot)
      expect(get.stderr.slice(1)).toEqual([expect.stringMatching(/^lp2p: interrupted by a failed write to stdout/)])
      // stopped at its first line, before any piece: no lock, and no .part (nothing in it to resume)
      expect(fs.existsSync(out) ? fs.readdirSync(out) : []).toEqual([])
      const share = path.join(dir(), 'share')
      expect(await run(['peer', '--share', share, '--tracker', tracker])).toEqual({ code: 1, stderr: [cannot] })
    } finally { fs.closeSync(full) }
  }, 90_000)

  it('a failed start or a usage error ends the process at once: peer on a missing folder and a dashboard port taken (1), usage errors commander catches and an empty name (2), a bad LP2P_LOG_LEVEL or LP2P_TRACKER (2, naming it; no stack trace)', async () => {
    const taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const takenAt = `127.0.0.1:${(taken.address() as net.AddressInfo).port}`
    const runs = [
      { args: ['tracker', '--data', path.join(dir(), 'tracker-data'), '--port', '0', '--http', takenAt], env: {}, code: 1, says: new RegExp(`^lp2p: --http ${takenAt}: .*EADDRINUSE`) },
      { args: ['ls'], env: { LP2P_TRACKER: 'nonsense' }, code: 2, says: /^lp2p: LP2P_TRACKER: .*"nonsense" is not HOST:PORT/ },
      { args: ['peer', '--share', path.join(dir(), 'missing'), '--tracker', '127.0.0.1:9'], env: {}, code: 1, says: /^lp2p: ENOENT/ },
      { args: ['get'], env: {}, code: 2, says: /missing required argument/ },
      { args: ['get', 'x', '--bogus'], env: {}, code: 2, says: /unknown option '--bogus'/ },
      { args: ['get', '', '--tracker', '127.0.0.1:9'], env: {}, code: 2, says: /the file name or id is empty/ },
      { args: ['ls', '--tracker', '127.0.0.1:9'], env: { LP2P_LOG_LEVEL: 'loud' }, code: 2, says: /LP2P_LOG_LEVEL/ },
    ]
    try {
      for (const r of runs) {
        const p = spawnLp2p(r.args, r.env)
        procs.push(p)
        // (before: the peer printed its error and ran on, idle, until killed)
        let timer: NodeJS.Timeout | undefined
        const code = await Promise.race([p.exited, new Promise((resolve) => { timer = setTimeout(() => resolve('still running'), 10_000) })])
        clearTimeout(timer)
        expect({ args: r.args, code }).toEqual({ args: r.args, code: r.code })
        await new Promise((r) => setImmediate(r))
        expect(p.stderr.join('\n')).toMatch(r.says)
        expect(p.stderr.join('\n')).not.toMatch(/\n\s+at /) // no stack trace
      }
      // the tracker that could not start left no data folder behind
      expect(fs.existsSync(path.join(dir(), 'tracker-data'))).toBe(false)
    } finally { taken.close() }
  }, 60_000)

  it('a bad switch value in the environment is a usage error (exit 2) naming the variable', async () => {
    const ls = spawnLp2p(['ls', '--tracker', '127.0.0.1:9'], { LP2P_JSON: 'maybe' })
    procs.push(ls)
    expect(await ls.exited).toBe(2)
    expect(ls.stderr.join('\n')).toContain('LP2P_JSON="maybe"')
  })
})
