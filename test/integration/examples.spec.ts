import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { perTest, sha256File, shareRandom, startPeer, startTracker } from './helpers'

const ROOT = path.join(__dirname, '..', '..')

/** Run an example as its own process (ts-node, as `make session` does); its exit code and output. */
function runExample (script: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'examples', script), ...args], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LP2P_TRACKER: '', ...env },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { if (stdout.length < 1e6) stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { if (stderr.length < 1e6) stderr += d.toString() })
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }) })
  })
}

describe('examples/leech-many.ts', () => {
  const t = perTest('examples')

  it('against a running swarm: leeches the named files with a concurrency limit and prints a verified summary', async () => {
    const { address: tracker } = await startTracker(t.procs)
    const files = ['one.bin', 'two.bin', 'three.bin'].map((name, i) => ({ name, ...shareRandom(t.dir(), 'share', name, (i + 1) << 20) }))
    await startPeer(t.procs, path.join(t.dir(), 'share'), tracker)
    const out = path.join(t.dir(), 'out')
    const r = await runExample('leech-many.ts', files.map((f) => f.name), { LP2P_TRACKER: tracker, LP2P_OUT: out, CONCURRENCY: '2' })
    expect(r.code).toBe(0)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0].split(/\s+/)).toEqual(['NAME', 'SIZE', 'TIME', 'RATE', 'SHA256'])
    for (const f of files) {
      const row = lines.find((l) => l.startsWith(f.name + ' '))
      expect(row).toContain(f.sha.slice(0, 16))
      expect(await sha256File(path.join(out, f.name))).toBe(f.sha)
    }
    expect(lines.at(-1)).toBe('3 of 3 verified')
    expect(r.stderr).toContain('3 file(s), 2 at a time')
  })

  it('self-contained (no LP2P_TRACKER): starts its own swarm, verifies, cleans up', async () => {
    const before = new Set(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('lp2p-example-')))
    const r = await runExample('leech-many.ts', [], { EXAMPLE_FILES: '3', EXAMPLE_MIB: '1' })
    expect(r.code).toBe(0)
    expect(r.stdout.trim().split('\n').at(-1)).toBe('3 of 3 verified')
    expect(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('lp2p-example-') && !before.has(n))).toEqual([])
  })

  it('exits non-zero and says which file failed', async () => {
    const { address: tracker } = await startTracker(t.procs)
    shareRandom(t.dir(), 'share', 'real.bin', 1 << 20)
    await startPeer(t.procs, path.join(t.dir(), 'share'), tracker)
    const r = await runExample('leech-many.ts', ['real.bin', 'missing.bin'], { LP2P_TRACKER: tracker, LP2P_OUT: path.join(t.dir(), 'out') })
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(/missing\.bin .*ERR_NOT_FOUND/)
    expect(r.stdout.trim().split('\n').at(-1)).toBe('1 of 2 verified')
  })
})
