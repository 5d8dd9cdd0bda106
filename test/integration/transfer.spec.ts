import fs from 'node:fs'
import path from 'node:path'
import { writeRandomFile } from '../../src/cli/demo'
import { MIN_BLOCK_SIZE } from '../../src/limits'
import { runLp2p, sha256File, startPeer, startTracker, stopAll, tempDir, type Spawned } from './helpers'

/** Real processes on 127.0.0.1: one tracker, one sharing peer, `get` runs compared by SHA-256. */
describe('end-to-end transfer', () => {
  const procs: Spawned[] = []
  let dir: string
  let tracker: string
  const files: Record<string, { size: number, sha: string }> = {}
  const sizes: Record<string, number> = {
    'empty.bin': 0,
    'one-byte.bin': 1,
    'one-block.bin': MIN_BLOCK_SIZE, // files this small get the smallest pieces
    'block-plus-one.bin': MIN_BLOCK_SIZE + 1,
    'big.bin': 64 * 1024 * 1024,
    // 249 bytes: NAME.part.state.tmp would pass the 255-byte limit on names (the working files get a shorter stem)
    [`long-${'é'.repeat(120)}.bin`]: 100_000,
  }

  beforeAll(async () => {
    dir = tempDir('e2e')
    const share = path.join(dir, 'share')
    fs.mkdirSync(share)
    for (const [name, size] of Object.entries(sizes)) files[name] = { size, sha: writeRandomFile(path.join(share, name), size) }
    tracker = (await startTracker(procs)).address
    await startPeer(procs, share, tracker)
  }, 90_000)

  afterAll(async () => {
    await stopAll(procs)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it.each(Object.keys(sizes))('downloads %s exactly, by name', async (name) => {
    const out = path.join(dir, `out-${name}`)
    const r = await runLp2p(['get', name, '--out', out, '--tracker', tracker, '--json'])
    expect(r.stderr.filter((l) => !l.startsWith('{'))).toEqual([])
    expect(r.code).toBe(0)
    const done = r.events.at(-1) as Record<string, unknown>
    expect(done).toMatchObject({ event: 'done', name, bytes: files[name].size, sha256: files[name].sha, downloaded: files[name].size, path: path.join(out, name) })
    expect(await sha256File(path.join(out, name))).toBe(files[name].sha)
    expect(fs.readdirSync(out)).toEqual([name]) // no .part left behind
  }, 60_000)

  it('downloads by file-id prefix', async () => {
    const out = path.join(dir, 'out-prefix')
    const r = await runLp2p(['get', files['one-byte.bin'].sha.slice(0, 10), '--out', out, '--tracker', tracker, '--json'])
    expect(r.code).toBe(0)
    expect(await sha256File(path.join(out, 'one-byte.bin'))).toBe(files['one-byte.bin'].sha)
  })

  it('fails cleanly for an unknown name: one line, exit 3, nothing written', async () => {
    const out = path.join(dir, 'out-unknown')
    const r = await runLp2p(['get', 'no-such-file.iso', '--out', out, '--tracker', tracker])
    expect(r.code).toBe(3)
    expect(r.stderr.filter((l) => !l.startsWith('{'))).toEqual(['lp2p: no file named or with id prefix "no-such-file.iso"'])
    expect(fs.existsSync(out)).toBe(false)
  })

  it('reports an unknown name as an error event with --json', async () => {
    const r = await runLp2p(['get', 'no-such-file.iso', '--out', path.join(dir, 'x'), '--tracker', tracker, '--json'])
    expect(r.code).toBe(3)
    expect(r.events).toEqual([{ event: 'error', code: 'ERR_NOT_FOUND', message: 'no file named or with id prefix "no-such-file.iso"', query: 'no-such-file.iso' }])
  })

  it('lists the files with ls --json', async () => {
    const r = await runLp2p(['ls', '--tracker', tracker, '--json'])
    expect(r.code).toBe(0)
    const list = r.events[0] as unknown as { name: string, fileId: string, size: number, blockSize: number, pieces: number }[]
    expect(list.map((f) => f.name).sort()).toEqual(Object.keys(sizes).sort())
    for (const f of list) {
      expect(f.fileId).toBe(files[f.name].sha)
      expect(f.size).toBe(files[f.name].size)
      expect(f.blockSize % 4096).toBe(0)
      expect(f.pieces).toBe(Math.ceil(f.size / f.blockSize))
    }
  })

  it('shows the sharing peer with status --json', async () => {
    const r = await runLp2p(['status', '--tracker', tracker, '--json'])
    expect(r.code).toBe(0)
    const nodes = r.events[0] as unknown as { nodeId: string, address: string, lastSeen: string, uploaded: number, downloaded: number, files: { fileId: string, completeness: number }[] }[]
    // the sharing peer, and the leechers of the tests above (which served while they fetched) are gone
    const sharer = nodes.find((n) => n.files.length === Object.keys(files).length)
    expect(sharer).toBeDefined()
    expect(sharer?.address).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(sharer?.files.map((f) => f.fileId).sort()).toEqual(Object.values(files).map((f) => f.sha).sort())
    expect(sharer?.files.every((f) => f.completeness === 1)).toBe(true)
    expect(sharer?.downloaded).toBe(0)
    expect(Date.now() - Date.parse(sharer?.lastSeen ?? '')).toBeLessThan(60_000)
  })

  it('refuses to overwrite an existing file before fetching anything: exit 8, the file untouched, no .part', async () => {
    const out = path.join(dir, 'out-clobber')
    fs.mkdirSync(out)
    fs.writeFileSync(path.join(out, 'big.bin'), 'precious')
    const r = await runLp2p(['get', 'big.bin', '--out', out, '--tracker', tracker, '--json'])
    expect(r.code).toBe(8)
    expect(r.events.at(-1)).toMatchObject({ event: 'error', code: 'ERR_STORAGE', message: expect.stringContaining('big.bin already exists') })
    expect(r.events.some((e) => e.event === 'progress' || e.event === 'piece')).toBe(false)
    expect(fs.readFileSync(path.join(out, 'big.bin'), 'utf8')).toBe('precious')
    expect(fs.readdirSync(out)).toEqual(['big.bin'])
  })

  it('fails with exit 5 when no tracker answers: one line on stderr, no log warning before it', async () => {
    const r = await runLp2p(['get', 'big.bin', '--out', path.join(dir, 'none'), '--tracker', '127.0.0.1:9', '--json'])
    expect(r.code).toBe(5)
    expect(r.events.at(-1)).toMatchObject({ event: 'error', code: 'ERR_TRACKER_UNREACHABLE' })
    expect(r.stderr).toEqual(['lp2p: tracker 127.0.0.1:9 did not answer after 5 attempts'])
  }, 30_000)
})
