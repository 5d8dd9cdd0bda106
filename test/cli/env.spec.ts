import type { Command, Option } from 'commander'
import { envName, envSwitch, program } from '../../src/cli/main'
import { optionsOf, unset } from '../helpers/cli'


/** Every command and the root, with their settings (not the help option, which commander keeps apart, nor --version: both print and exit). */
function everyOption (): { cmd: Command, option: Option }[] {
  const p = program()
  return [p, ...p.commands].flatMap((cmd) => cmd.options.filter((o) => o.long !== '--version').map((option) => ({ cmd, option })))
}

describe('options from the environment', () => {
  it('gives every option of every command an LP2P_* variable, named in its --help', () => {
    const all = everyOption()
    expect(all.length).toBeGreaterThan(25)
    const missing = all.filter(({ option }) => option.envVar === undefined || !/^LP2P_[A-Z0-9_]+$/.test(option.envVar))
    expect(missing.map(({ cmd, option }) => `${cmd.name()} ${option.flags}`)).toEqual([])
    for (const { cmd, option } of all) {
      const help = cmd.helpInformation().replace(/\s+/g, ' ')
      expect(help).toContain(`env: ${option.envVar as string}`)
    }
    // the flags the issue names, by name
    const names = new Set(all.map(({ option }) => option.envVar))
    for (const n of ['LP2P_TRACKER', 'LP2P_SHARE', 'LP2P_SEED', 'LP2P_MEMORY', 'LP2P_DEMO_KEEP', 'LP2P_DEMO_SIZE', 'LP2P_DEMO_PEERS', 'LP2P_OUT', 'LP2P_JSON', 'LP2P_LOG_LEVEL', 'LP2P_LOG_FORMAT']) expect(names).toContain(n)
  })

  it('explains in --help how switches read their variables', () => {
    // text added with addHelpText is not part of helpInformation(); outputHelp() writes it
    let text = ''
    const get = program().commands.find((c) => c.name() === 'get') as Command
    get.configureOutput({ writeOut: (s) => { text += s } }).outputHelp()
    expect(text).toContain('env: LP2P_SEED')
    expect(text).toMatch(/Switches .* are on for 1, true, yes, on, off for 0, false, no, off or empty/s)
  })

  it('derives a name for an option that gives none', () => {
    expect(envName('uploadLimit')).toBe('LP2P_UPLOAD_LIMIT')
    expect(envName('memory')).toBe('LP2P_MEMORY')
    expect(envName('httpPort')).toBe('LP2P_HTTP_PORT')
  })

  it('sets values the action receives, parsed like the flag', () => {
    expect(optionsOf('peer', [], { LP2P_SHARE: '/srv/files', LP2P_TRACKER: '10.0.0.1:9', LP2P_UPLOAD_LIMIT: '20M', LP2P_PORT: '4000' }))
      .toMatchObject({ share: '/srv/files', tracker: '10.0.0.1:9', uploadLimit: 20e6, port: 4000 })
    expect(optionsOf('get', ['x'], { LP2P_OUT: '/tmp/dl', LP2P_DOWNLOAD_LIMIT: '1Mi' })).toMatchObject({ out: '/tmp/dl', downloadLimit: 1024 * 1024 })
    expect(optionsOf('get', ['x'], { LP2P_STALL_TIMEOUT: '2m' })).toMatchObject({ stallTimeout: 120_000 })
    expect(optionsOf('get', ['x', '--stall-timeout', '0'], {})).toMatchObject({ stallTimeout: 0 })
    expect(optionsOf('get', ['x'], {})).toMatchObject({ stallTimeout: 120_000 })
    expect(optionsOf('demo', [], { LP2P_DEMO_SIZE: '64M', LP2P_DEMO_PEERS: '3' })).toMatchObject({ size: 64 * 1024 * 1024, peers: 3 })
  })

  it('lets a flag on the command line win over the variable', () => {
    expect(optionsOf('get', ['x', '--out', 'here'], { LP2P_OUT: '/tmp/dl' })).toMatchObject({ out: 'here' })
  })

  it('refuses a bad value from the environment as a usage error naming the variable', () => {
    expect(() => optionsOf('peer', [], { LP2P_SHARE: '.', LP2P_PORT: '70000' })).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: 'LP2P_PORT: port "70000" is not 0..65535' }))
    expect(() => optionsOf('get', ['x'], { LP2P_DOWNLOAD_LIMIT: '20Mb' })).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/^LP2P_DOWNLOAD_LIMIT: rate "20Mb"/) }))
    expect(() => optionsOf('get', ['x'], { LP2P_STALL_TIMEOUT: 'soon' })).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/^LP2P_STALL_TIMEOUT: duration "soon"/) }))
    // the same value on the command line is the user's own typing: no variable named
    expect(() => optionsOf('peer', ['--port', '70000'], { LP2P_SHARE: '.' })).toThrow(expect.objectContaining({ message: 'port "70000" is not 0..65535' }))
    // a bad variable under a flag that wins is never read
    expect(optionsOf('peer', ['--port', '5'], { LP2P_SHARE: '.', LP2P_PORT: 'abc' })).toMatchObject({ port: 5 })
  })

  it('refuses an empty folder (an exported but empty LP2P_SHARE shared the folder the peer was started in: all of ~)', () => {
    expect(() => optionsOf('peer', [], { LP2P_SHARE: '' })).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: 'LP2P_SHARE: --share is empty: name a folder (. for this one)' }))
    expect(() => optionsOf('peer', ['--share', ' '], {})).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/^--share is empty/) }))
    expect(() => optionsOf('tracker', [], { LP2P_DATA: '' })).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/^LP2P_DATA: --data is empty/) }))
    // (with --memory the variable is not read: the flag wins, as for any LP2P_DATA)
    expect(optionsOf('tracker', ['--memory'], { LP2P_DATA: '' })).toMatchObject({ memory: true })
    expect(() => optionsOf('get', ['x', '--out', ''], {})).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringMatching(/^--out is empty/) }))
    expect(optionsOf('peer', ['--share', '.'], {})).toMatchObject({ share: '.' })
  })

  it('reads switches by value: 1/true/yes/on are on, 0/false/no/off/empty are off, others refused', () => {
    for (const v of ['1', 'true', 'YES', 'on']) {
      expect(optionsOf('get', ['x'], { LP2P_JSON: v, LP2P_SEED: v })).toMatchObject({ json: true, seed: true })
      expect(optionsOf('tracker', [], { LP2P_MEMORY: v })).toMatchObject({ memory: true })
      expect(optionsOf('demo', [], { LP2P_DEMO_KEEP: v })).toMatchObject({ keep: true })
    }
    for (const v of ['0', 'false', 'No', 'off', '']) {
      const o = optionsOf('get', ['x'], { LP2P_JSON: v, LP2P_SEED: v })
      expect(o.json === true || o.seed === true).toBe(false)
    }
    // off is as good as not given: LP2P_MEMORY=0 does not conflict with --data
    expect(optionsOf('tracker', ['--data', '/srv/lp2p'], { LP2P_MEMORY: '0' })).toMatchObject({ data: '/srv/lp2p' })
    expect(optionsOf('tracker', ['--data', '/srv/lp2p'], { LP2P_MEMORY: '0' }).memory).toBeUndefined()
    // a flag beats the other option's variable, as it beats its own
    expect(optionsOf('tracker', ['--data', '/srv/lp2p'], { LP2P_MEMORY: '1' })).toMatchObject({ data: '/srv/lp2p' })
    expect(optionsOf('tracker', ['--data', '/srv/lp2p'], { LP2P_MEMORY: '1' }).memory).toBeUndefined()
    expect(optionsOf('tracker', ['--memory'], { LP2P_DATA: '/srv/lp2p' })).toMatchObject({ memory: true, data: expect.not.stringContaining('/srv/lp2p') })
    // both flags, or both variables, are a usage error naming them
    expect(() => optionsOf('tracker', ['--memory', '--data', '/srv/lp2p'])).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: '--memory and --data cannot be used together' }))
    expect(() => optionsOf('tracker', [], { LP2P_MEMORY: '1', LP2P_DATA: '/srv/lp2p' })).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: 'LP2P_MEMORY and LP2P_DATA cannot be used together' }))
    // the flag still turns it on whatever the variable says
    expect(optionsOf('get', ['x', '--json'], { LP2P_JSON: '0' })).toMatchObject({ json: true })
    expect(() => optionsOf('get', ['x'], { LP2P_JSON: 'maybe' })).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringContaining('LP2P_JSON') }))
    expect(envSwitch('LP2P_SEED', ' On ')).toBe(true)
  })

  it('reads a negated switch (--no-watch) the positive way: LP2P_WATCH=1 keeps watching, 0 stops it, others refused', () => {
    for (const v of ['1', 'yes']) expect(optionsOf('peer', ['--share', '.'], { LP2P_WATCH: v })).toMatchObject({ watch: true })
    for (const v of ['0', 'off', '']) expect(optionsOf('peer', ['--share', '.'], { LP2P_WATCH: v })).toMatchObject({ watch: false })
    expect(optionsOf('peer', ['--share', '.'])).toMatchObject({ watch: true })
    expect(optionsOf('peer', ['--share', '.', '--no-watch'], { LP2P_WATCH: '1' })).toMatchObject({ watch: false })
    expect(() => optionsOf('peer', ['--share', '.'], { LP2P_WATCH: 'maybe' })).toThrow(expect.objectContaining({ code: 'ERR_USAGE', message: expect.stringContaining('LP2P_WATCH') }))
  })

  it('takes the global log options from the environment', () => {
    const p = program().exitOverride()
    const cmd = p.commands.find((c) => c.name() === 'ls') as Command
    cmd.action(() => {})
    process.env.LP2P_LOG_FORMAT = 'json'
    try {
      p.parse(['node', 'lp2p', 'ls'])
      expect(p.opts()).toMatchObject({ logFormat: 'json', logLevel: 'warn' })
      process.env.LP2P_LOG_FORMAT = 'fancy'
      expect(() => program().exitOverride().configureOutput({ writeErr: () => {} }).parse(['node', 'lp2p', 'ls'])).toThrow(/fancy/)
    } finally { unset('LP2P_LOG_FORMAT') }
  })
})
