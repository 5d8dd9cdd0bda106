import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadState, saveState, statePath } from '../../src/storage/resumeState'

const meta = { name: 'f.bin', hash: 'a'.repeat(64), size: 3 * 16384, blockSize: 16384, pieces: 3 }

describe('resume state', () => {
  let dir: string
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lp2p-state-')) })
  afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }) })

  it('a FIFO or a symlink at the state\'s name is not read (a FIFO hung the get for good, deaf to Ctrl-C): no state', () => {
    const fifo = path.join(dir, 'fifo.bin.part')
    execFileSync('mkfifo', [statePath(fifo)])
    expect(loadState(fifo, meta)).toBeNull()
    const linked = path.join(dir, 'linked.bin.part')
    saveState(path.join(dir, 'real.bin.part'), meta, new Uint8Array([0x80]))
    fs.symlinkSync(statePath(path.join(dir, 'real.bin.part')), statePath(linked))
    expect(loadState(linked, meta)).toBeNull()
    expect(loadState(path.join(dir, 'real.bin.part'), meta)).toEqual(new Uint8Array([0x80]))
  })

  it('saves and loads which pieces are stored', () => {
    const part = path.join(dir, 'f.bin.part')
    saveState(part, meta, new Uint8Array([0b101]))
    expect(loadState(part, meta)).toEqual(new Uint8Array([0b101]))
    expect(fs.readdirSync(dir)).toEqual(['f.bin.part.state'])
  })

  it('a save that fails leaves no .tmp behind and the error goes to the caller', () => {
    const part = path.join(dir, 'f.bin.part')
    // the state's name is taken by a folder with something in it: the rename fails after the write
    fs.mkdirSync(statePath(part))
    fs.writeFileSync(path.join(statePath(part), 'x'), 'x')
    expect(() => saveState(part, meta, new Uint8Array([1]))).toThrow()
    expect(fs.readdirSync(dir)).toEqual(['f.bin.part.state'])
  })

  it('a symlink planted at the temporary name is not written through (it pointed outside the download folder)', () => {
    const part = path.join(dir, 'f.bin.part')
    const victim = path.join(dir, 'victim.txt')
    fs.writeFileSync(victim, 'precious')
    fs.symlinkSync(victim, `${statePath(part)}.tmp`)
    saveState(part, meta, new Uint8Array([0b11]))
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious')
    expect(loadState(part, meta)).toEqual(new Uint8Array([0b11]))
  })
})
