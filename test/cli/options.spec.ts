import fs from 'node:fs'
import path from 'node:path'
import { parseSize, program } from '../../src/cli/main'
import { optionsOf } from '../helpers/cli'

describe('CLI options', () => {
  it('gives every default in the unit the action expects (a default is not run through the parser)', () => {
    expect(optionsOf('demo', [])).toMatchObject({ size: 256 * 1024 * 1024, peers: 2 })
    expect(optionsOf('tracker', ['--memory'])).toMatchObject({ port: 7070, host: '127.0.0.1' })
    expect(optionsOf('peer', ['--share', '.'])).toMatchObject({ port: 0, uploadLimit: Infinity, tracker: '127.0.0.1:7070' })
    expect(optionsOf('get', ['x'])).toMatchObject({ port: 0, uploadLimit: Infinity, downloadLimit: Infinity, out: '.' })
  })

  it('parses sizes and rates', () => {
    expect(optionsOf('demo', ['--size', '64M'])).toMatchObject({ size: 64 * 1024 * 1024 })
    expect(optionsOf('get', ['x', '--upload-limit', '20M', '--download-limit', '1Mi'])).toMatchObject({ uploadLimit: 20e6, downloadLimit: 1024 * 1024 })
    expect(parseSize('1.5k')).toBe(1536)
    expect(() => parseSize('1.5')).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringContaining('not a whole number of bytes') }))
    expect(() => parseSize('lots')).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }))
  })

  it('refuses a bad port or rate as a usage error', () => {
    expect(() => optionsOf('peer', ['--share', '.', '--port', '70000'])).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }))
    // not decimal digits: an empty value would have bound any port; hex and exponents are typos
    for (const p of ['', ' ', '0x1F90', '1e3', '-1', '80.0', '+80']) expect(() => optionsOf('peer', ['--share', '.', '--port', p])).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringContaining(`port "${p}"`) }))
    expect(optionsOf('tracker', ['--memory', '--port', '0'])).toMatchObject({ port: 0 })
    expect(optionsOf('tracker', ['--memory', '--port', '08080'])).toMatchObject({ port: 8080 })
    expect(() => optionsOf('get', ['x', '--upload-limit', '20Mb'])).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }))
  })

  it('--version prints the version in package.json', () => {
    let printed = ''
    const p = program().exitOverride().configureOutput({ writeOut: (t) => { printed += t } })
    expect(() => p.parse(['node', 'lp2p', '--version'])).toThrow(expect.objectContaining({ code: 'commander.version' }))
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }
    expect(printed).toBe(`${pkg.version}\n`)
  })
})
