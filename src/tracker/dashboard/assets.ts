/**
 * The dashboard page: plain HTML, CSS and JS kept as strings so `tsc` ships them with the
 * tracker (no bundler, nothing fetched from the internet). The page runs under
 * `Content-Security-Policy: default-src 'self'`: no inline script or style, and every value that
 * came from the network is set with `textContent` (never parsed as HTML).
 */

export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lp2p tracker</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>lp2p tracker</h1>
  <span id="status" class="status" data-state="connecting">connecting…</span>
</header>
<section id="totals" class="totals"></section>
<section>
  <h2>Files</h2>
  <p id="files-note" class="note"></p>
  <table id="files">
    <thead><tr><th>name</th><th>file id</th><th class="num">size</th><th class="num">pieces</th><th class="num">seeders</th><th class="num">partial</th><th>piece availability (holders per piece)</th></tr></thead>
    <tbody></tbody>
  </table>
  <p class="legend"><span class="cell" data-level="0"></span> held by none <span class="cell" data-level="1"></span> rare <span class="cell" data-level="2"></span> some <span class="cell" data-level="3"></span> every probed holder</p>
</section>
<section>
  <h2>Clusters</h2>
  <div id="clusters"></div>
</section>
<section>
  <h2>Nodes</h2>
  <p id="nodes-note" class="note"></p>
  <table id="nodes">
    <thead><tr><th>node</th><th>address</th><th class="num">last seen</th><th class="num">files</th><th class="num">uploaded</th><th class="num">downloaded</th><th class="num">↑ rate</th><th class="num">↓ rate</th></tr></thead>
    <tbody></tbody>
  </table>
</section>
<footer>read-only · <a href="/api/state">/api/state</a> · <a href="/metrics">/metrics</a></footer>
</body>
</html>
`

export const APP_CSS = `:root { --bg: #fafafa; --fg: #1d2329; --muted: #6b7680; --line: #e1e5e9; --ok: #2e9e4f; --bad: #d0342c; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 16px 24px; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; align-items: baseline; gap: 16px; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
.status { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: var(--line); }
.status[data-state="live"] { background: #d8f0de; color: #1c6b33; }
.status[data-state="polling"] { background: #fff1cc; color: #7a5a00; }
.status[data-state="down"] { background: #f8d7d5; color: #8c1f19; }
.totals { display: flex; gap: 12px; flex-wrap: wrap; }
.totals div { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; min-width: 120px; }
.totals b { display: block; font-size: 18px; }
.totals span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; white-space: nowrap; }
th { font-weight: 600; color: var(--muted); font-size: 12px; }
td.name { white-space: normal; word-break: break-all; max-width: 320px; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.note { color: var(--muted); font-size: 12px; margin: 2px 0 6px; min-height: 1em; }
.heatmap { display: flex; width: 100%; min-width: 260px; height: 18px; border: 1px solid var(--line); background: #eee; }
.heatmap .cell { flex: 1 1 0; min-width: 1px; height: 100%; }
.heatmap.none { align-items: center; justify-content: center; color: var(--muted); font-size: 11px; background: #f4f4f4; }
.heatinfo { color: var(--muted); font-size: 11px; }
.legend { color: var(--muted); font-size: 12px; display: flex; align-items: center; gap: 6px; }
.legend .cell { display: inline-block; width: 14px; height: 12px; }
.legend .cell[data-level="0"] { background: hsl(4, 70%, 50%); }
.legend .cell[data-level="1"] { background: hsl(35, 80%, 50%); }
.legend .cell[data-level="2"] { background: hsl(75, 60%, 45%); }
.legend .cell[data-level="3"] { background: hsl(130, 55%, 38%); }
.cluster { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; margin-bottom: 6px; }
.cluster .title { font-weight: 600; word-break: break-all; }
.chips { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 4px; }
.chip { font-size: 12px; border-radius: 10px; padding: 1px 8px; background: #eef1f4; }
.chip.seed { background: #d8f0de; }
footer { margin-top: 24px; color: var(--muted); font-size: 12px; }
`

export const APP_JS = `'use strict'
// lp2p tracker dashboard. Every name shown came from the network: text goes through
// textContent only, and nothing here builds HTML from strings.
;(function () {
  var statusEl = document.getElementById('status')

  function el (tag, opts, children) {
    var e = document.createElement(tag)
    opts = opts || {}
    if (opts.cls) e.className = opts.cls
    if (opts.text !== undefined) e.textContent = String(opts.text)
    if (opts.title !== undefined) e.title = String(opts.title)
    if (opts.data) for (var k in opts.data) e.setAttribute('data-' + k, String(opts.data[k]))
    ;(children || []).forEach(function (c) { e.appendChild(c) })
    return e
  }

  function bytes (n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    var i = 0
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++ }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + u[i]
  }
  function rate (n) { return n === null ? '…' : n > 0 ? bytes(n) + '/s' : '–' }
  function ago (ms) { return ms < 1000 ? 'now' : Math.round(ms / 1000) + ' s ago' }
  function short (id) { return String(id).slice(0, 12) }

  // 0 holders: red; then orange to green as a piece is held by more of the probed holders
  function colour (mean, max) {
    if (!(mean > 0)) return 'hsl(4, 70%, 50%)'
    var f = max > 0 ? Math.min(1, mean / max) : 1
    return 'hsl(' + Math.round(35 + 95 * f) + ', ' + Math.round(80 - 25 * f) + '%, ' + Math.round(50 - 12 * f) + '%)'
  }

  function heatmapEl (f) {
    var a = f.availability
    if (!a) return el('div', { cls: 'heatmap none', text: f.holders > 0 ? 'not probed' : 'no live holder', data: { 'file-id': f.fileId } })
    var box = el('div', { cls: 'heatmap', data: { 'file-id': f.fileId, probed: a.probed, answered: a.answered, cells: a.min.length } })
    for (var i = 0; i < a.min.length; i++) {
      var first = i * a.piecesPerCell
      var last = Math.min(f.pieces, first + a.piecesPerCell) - 1
      var c = el('span', {
        cls: 'cell',
        data: { count: a.min[i], mean: a.mean[i] },
        title: (first === last ? 'piece ' + first : 'pieces ' + first + '–' + last) + ': ' + (first === last ? a.min[i] : 'at least ' + a.min[i] + ', mean ' + a.mean[i]) + ' of ' + a.answered + ' holder(s)'
      })
      c.style.backgroundColor = colour(a.mean[i], a.answered)
      box.appendChild(c)
    }
    return box
  }

  function replace (tbody, rows) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild)
    rows.forEach(function (r) { tbody.appendChild(r) })
  }

  function render (s) {
    var totals = document.getElementById('totals')
    while (totals.firstChild) totals.removeChild(totals.firstChild)
    ;[[s.totals.files, 'files known'], [s.totals.nodes, 'live nodes'], [bytes(s.totals.uploaded), 'uploaded (live nodes)'], [bytes(s.totals.downloaded), 'downloaded (live nodes)'], [rate(s.totals.upRate), 'upload rate'], [rate(s.totals.downRate), 'download rate']].forEach(function (t) {
      totals.appendChild(el('div', {}, [el('b', { text: t[0] }), el('span', { text: t[1] })]))
    })

    replace(document.querySelector('#files tbody'), s.files.map(function (f) {
      var info = f.availability ? el('div', { cls: 'heatinfo', text: f.availability.answered + '/' + f.availability.probed + ' holder(s) answered' + (f.availability.piecesPerCell > 1 ? ', ' + f.availability.piecesPerCell + ' pieces per cell' : '') }) : el('span')
      return el('tr', { data: { 'file-id': f.fileId } }, [
        el('td', { cls: 'name', text: f.name }),
        el('td', { cls: 'mono', text: short(f.fileId), title: f.fileId }),
        el('td', { cls: 'num', text: bytes(f.size) }),
        el('td', { cls: 'num', text: f.pieces + ' × ' + bytes(f.blockSize) }),
        el('td', { cls: 'num seeders', text: f.seeders }),
        el('td', { cls: 'num partial', text: f.partial }),
        el('td', {}, [heatmapEl(f), info])
      ])
    }))
    document.getElementById('files-note').textContent = s.totals.files > s.files.length
      ? 'showing ' + s.files.length + ' of ' + s.totals.files + ' files (most held first); availability is probed for the ' + s.limits.probedFiles + ' most held, up to ' + s.limits.probedHolders + ' holders each'
      : 'availability is probed for the ' + s.limits.probedFiles + ' most held files, up to ' + s.limits.probedHolders + ' holders each, about once a second'

    var clusters = document.getElementById('clusters')
    while (clusters.firstChild) clusters.removeChild(clusters.firstChild)
    s.files.filter(function (f) { return f.cluster.length > 0 }).forEach(function (f) {
      clusters.appendChild(el('div', { cls: 'cluster', data: { 'file-id': f.fileId } }, [
        el('div', { cls: 'title', text: f.name + ' · ' + f.holders + ' node(s)' }),
        el('div', { cls: 'chips' }, f.cluster.map(function (m) {
          var pct = f.pieces > 0 ? Math.floor(100 * m.have / f.pieces) : 100
          return el('span', { cls: 'chip' + (m.have >= f.pieces ? ' seed' : ''), text: short(m.nodeId) + ' ' + m.address + ' ' + pct + '%', title: m.nodeId })
        }))
      ]))
    })
    if (!clusters.firstChild) clusters.appendChild(el('p', { cls: 'note', text: 'no file has a live holder' }))

    replace(document.querySelector('#nodes tbody'), s.nodes.map(function (n) {
      return el('tr', { data: { 'node-id': n.nodeId } }, [
        el('td', { cls: 'mono', text: short(n.nodeId), title: n.nodeId }),
        el('td', { cls: 'mono', text: n.address }),
        el('td', { cls: 'num', text: ago(n.ago) }),
        el('td', { cls: 'num', text: n.fileCount }),
        el('td', { cls: 'num', text: bytes(n.uploaded) }),
        el('td', { cls: 'num', text: bytes(n.downloaded) }),
        el('td', { cls: 'num up-rate', text: rate(n.upRate), title: n.upRate === null ? 'measuring: a rate needs two heartbeats' : undefined }),
        el('td', { cls: 'num down-rate', text: rate(n.downRate) })
      ])
    }))
    document.getElementById('nodes-note').textContent = s.totals.nodes > s.nodes.length ? 'showing ' + s.nodes.length + ' of ' + s.totals.nodes + ' nodes' : ''
    document.body.setAttribute('data-updated', String(s.at))
  }

  function setStatus (state, text) { statusEl.setAttribute('data-state', state); statusEl.textContent = text }

  // when the live feed is refused (too many viewers) or unsupported, poll the snapshot instead
  var polling = false
  function poll () {
    if (polling) return
    polling = true
    setStatus('polling', 'polling every 5 s')
    var tick = function () {
      fetch('/api/state', { cache: 'no-store' }).then(function (r) { return r.json() }).then(function (s) { render(s); setStatus('polling', 'polling every 5 s') })
        .catch(function () { setStatus('down', 'tracker unreachable') })
        .then(function () { setTimeout(tick, 5000) })
    }
    tick()
  }

  if (typeof EventSource === 'undefined') { poll(); return }
  var es = new EventSource('/events')
  es.addEventListener('state', function (ev) {
    try { render(JSON.parse(ev.data)); setStatus('live', 'live') } catch (e) { setStatus('down', 'bad update: ' + e.message) }
  })
  es.onerror = function () {
    if (es.readyState === EventSource.CLOSED) { es.close(); poll() } else setStatus('down', 'reconnecting…')
  }
})()
`
