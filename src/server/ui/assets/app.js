// app.js: the eddy dashboard. Polls /ui/api/state once a second, keeps the last HISTORY points of every
// series in memory, turns the server's cumulative counters into per-second rates (the delta between two
// polls), and redraws the server header, the live charts (hand-written SVG) and one card per stream
// (shards, lineage tree, consumers).
//
// Robustness: every field of the state is optional (a missing one shows as "–" and draws nothing); a
// counter that went down (server restart) or a stream that was deleted and created again (new created_ms)
// gives no rate point instead of a spike. Names are put in the page with textContent, never as HTML.
// Tests read data-* attributes: body[data-state], figure[data-chart][data-points][data-max], [data-shard].

const STATE_URL = '/ui/api/state';
const POLL_MS = 1000;
const HISTORY = 120; // points kept per series: two minutes
const HASH_SPACE = 1n << 128n;
const PALETTE = ['#2f7ed8', '#e4572e', '#17a398', '#8e44ad', '#f3a712', '#34495e', '#e84393', '#6ab04c',
  '#00a8cc', '#a0522d', '#7f8c8d', '#b8860b'];
const SVG_NS = 'http://www.w3.org/2000/svg';

const CHARTS = [
  { id: 'records', title: 'Incoming records/s', fmt: fmtCount, minTop: 10 },
  { id: 'bytes', title: 'Incoming bytes/s', fmt: fmtBytes, minTop: 1024 },
  { id: 'outgoing', title: 'Outgoing records/s (reads and pushes)', fmt: fmtCount, minTop: 10 },
  { id: 'throttled', title: 'Throttled per second (write solid, read dashed)', fmt: fmtCount, minTop: 1 },
  { id: 'shard-age', title: 'Iterator age per shard (GetRecords)', fmt: fmtMs, minTop: 1000 },
  { id: 'consumer-age', title: 'Consumers: millis behind latest', fmt: fmtMs, minTop: 1000 },
];

/* ---- formatting and DOM helpers ---- */

const $ = (id) => document.getElementById(id);
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const list = (v) => (Array.isArray(v) ? v.filter((x) => x !== null && x !== undefined) : []);
const text = (v) => (v === null || v === undefined || v === '' ? '–' : String(v));

function scaled(v, base, units) {
  if (num(v) === null) return '–';
  let i = 0;
  while (Math.abs(v) >= base && i < units.length - 1) {
    v /= base;
    i += 1;
  }
  const digits = Number.isInteger(v) || Math.abs(v) >= 100 ? 0 : 1;
  return `${v.toFixed(digits)}${units[i]}`;
}
function fmtCount(v) {
  return scaled(v, 1000, ['', 'k', 'M', 'G', 'T']);
}
function fmtBytes(v) {
  return scaled(v, 1024, [' B', ' KiB', ' MiB', ' GiB', ' TiB']);
}
function fmtMs(v) {
  if (num(v) === null) return '–';
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(v < 10_000 ? 1 : 0)} s`;
  if (v < 3_600_000) return `${(v / 60_000).toFixed(1)} min`;
  return `${(v / 3_600_000).toFixed(1)} h`;
}
function fmtDuration(ms) {
  if (num(ms) === null || ms < 0) return '–';
  const s = Math.floor(ms / 1000);
  const parts = [[Math.floor(s / 86400), 'd'], [Math.floor(s / 3600) % 24, 'h'], [Math.floor(s / 60) % 60, 'm'],
    [s % 60, 's']];
  const first = parts.findIndex(([n]) => n > 0);
  return first < 0 ? '0s' : parts.slice(first, first + 2).map(([n, u]) => `${n}${u}`).join(' ');
}

/** An element; attrs go to setAttribute (null/undefined skipped), children are nodes or strings. */
function make(ns, tag, attrs = {}, children = []) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}
const el = (tag, attrs, ...children) => make(null, tag, attrs, children);
const svg = (tag, attrs, ...children) => make(SVG_NS, tag, attrs, children);

/** A stable colour per key, in order of first appearance, so that a stream keeps its colour everywhere. */
const colours = new Map();
function colour(key) {
  if (!colours.has(key)) colours.set(key, PALETTE[colours.size % PALETTE.length]);
  return colours.get(key);
}

/* ---- history: chart id -> series name -> {colour, dashed, points: [{t, v}]} ---- */

const history = new Map(CHARTS.map((c) => [c.id, new Map()]));
let previous = null; // {t, counters: Map(stream key -> counters)} of the last poll
let lastNow = Date.now();

function addPoint(chart, name, t, v, { colourKey = name, dashed = false } = {}) {
  if (num(v) === null) return;
  const series = history.get(chart);
  if (!series.has(name)) series.set(name, { colour: colour(colourKey), dashed, points: [] });
  const pts = series.get(name).points;
  const last = pts[pts.length - 1];
  if (last && last.t > t) pts.length = 0; // the server's clock went back: start the series again
  if (last && last.t === t) pts.pop(); // the same instant twice: the newer value wins
  pts.push({ t, v });
  if (pts.length > HISTORY) pts.shift();
}

/** Per-second rate of a cumulative counter between two polls, or null (new, missing or reset counter). */
function rate(before, after, field, dtMs) {
  const a = num(before?.[field]);
  const b = num(after?.[field]);
  return a === null || b === null || b < a || dtMs <= 0 ? null : ((b - a) * 1000) / dtMs;
}

const streamKey = (s) => `${s.name}\u0000${s.created_ms ?? ''}`;
const shardLabel = (id) => {
  const m = /(\d+)$/.exec(String(id ?? ''));
  return m ? `#${Number(m[1])}` : text(id);
};

function sample(state, t) {
  const counters = new Map();
  for (const s of list(state.streams)) {
    const name = text(s.name);
    counters.set(streamKey(s), s.counters);
    const before = previous?.counters.get(streamKey(s));
    if (before) {
      const dt = t - previous.t;
      addPoint('records', name, t, rate(before, s.counters, 'incoming_records', dt));
      addPoint('bytes', name, t, rate(before, s.counters, 'incoming_bytes', dt));
      const read = rate(before, s.counters, 'get_records_records', dt);
      const pushed = rate(before, s.counters, 'subscribe_event_records', dt);
      addPoint('outgoing', name, t, read === null && pushed === null ? null : (read ?? 0) + (pushed ?? 0));
      addPoint('throttled', `${name} write`, t, rate(before, s.counters, 'write_throttled', dt), { colourKey: name });
      addPoint('throttled', `${name} read`, t, rate(before, s.counters, 'read_throttled', dt),
        { colourKey: name, dashed: true });
    }
    for (const sh of list(s.shards)) {
      const age = num(sh.iterator_age_ms);
      if (sh.open || age > 0) addPoint('shard-age', `${name} ${shardLabel(sh.id)}`, t, age);
    }
    for (const c of list(s.consumers)) {
      addPoint('consumer-age', `${name}/${text(c.name)}`, t, num(c.millis_behind_latest));
    }
  }
  previous = { t, counters };
  for (const series of history.values()) {
    for (const [name, s] of series) {
      while (s.points.length > 0 && s.points[0].t < t - HISTORY * POLL_MS) s.points.shift();
      if (s.points.length === 0) series.delete(name);
    }
  }
}

/** The newest point of a series, or null. */
function latest(chart, name) {
  const pts = history.get(chart).get(name)?.points ?? [];
  return pts.length ? pts[pts.length - 1].v : null;
}

/* ---- charts ---- */

/** The smallest 1, 2 or 5 times a power of ten that is at least v. */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((c) => c >= v * 0.9999);
}

function setupCharts() {
  $('charts').replaceChildren(...CHARTS.map((c) => el('figure', { class: 'chart', 'data-chart': c.id,
    'data-points': 0, 'data-max': 0 }, el('figcaption', {}, c.title), el('div', { class: 'plot' }),
  el('ul', { class: 'legend' }))));
}

function drawChart(chart, now) {
  const fig = document.querySelector(`[data-chart="${chart.id}"]`);
  const series = [...history.get(chart.id)].sort(([a], [b]) => a.localeCompare(b));
  const W = Math.max(240, Math.floor(fig.querySelector('.plot').clientWidth || 360));
  const H = 130;
  const pad = { l: 58, r: 8, t: 8, b: 18 };
  let max = 0;
  let points = 0;
  let oldest = now;
  for (const [, s] of series) {
    points = Math.max(points, s.points.length);
    oldest = Math.min(oldest, s.points[0].t);
    for (const p of s.points) max = Math.max(max, p.v);
  }
  // The time axis grows with the history, from 30 s to the full two minutes.
  const span = Math.min(HISTORY * POLL_MS, Math.max(30_000, Math.ceil((now - oldest) / 30_000) * 30_000));
  const t0 = now - span;
  const top = Math.max(niceCeil(max), chart.minTop);
  const x = (t) => pad.l + ((t - t0) / (now - t0)) * (W - pad.l - pad.r);
  const y = (v) => pad.t + (1 - v / top) * (H - pad.t - pad.b);
  const grid = [0, top / 2, top].map((v) => [
    svg('line', { class: 'grid', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }),
    svg('text', { class: 'axis', x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, chart.fmt(v)),
  ]);
  const ago = (ms) => (ms >= 60_000 ? `-${ms / 60_000} min` : `-${ms / 1000} s`);
  const times = [[t0, ago(span)], [now - span / 2, ago(span / 2)], [now, 'now']].map(([t, label], i) =>
    svg('text', { class: 'axis', x: x(t), y: H - 4, 'text-anchor': ['start', 'middle', 'end'][i] }, label));
  const lines = series.map(([name, s]) => {
    let d = '';
    s.points.forEach((p, i) => {
      const gap = i === 0 || p.t - s.points[i - 1].t > 2.5 * POLL_MS;
      d += `${gap ? 'M' : 'L'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
    });
    const last = s.points[s.points.length - 1];
    return svg('g', { 'data-series': name },
      svg('path', { class: s.dashed ? 'line dashed' : 'line', d, stroke: s.colour }),
      svg('circle', { cx: x(last.t), cy: y(last.v), r: 2.5, fill: s.colour }));
  });
  const plot = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': chart.title },
    grid, times, lines);
  if (series.length === 0) {
    plot.append(svg('text', { class: 'empty', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no data yet'));
  }
  fig.querySelector('.plot').replaceChildren(plot);
  fig.querySelector('.legend').replaceChildren(...series.map(([name, s]) => el('li', {},
    el('i', { class: s.dashed ? 'swatch dashed' : 'swatch', 'data-colour': s.colour }), `${name} `,
    el('b', {}, chart.fmt(s.points[s.points.length - 1].v)))));
  // Swatch colours through the CSSOM: the content-security-policy forbids style attributes.
  for (const i of fig.querySelectorAll('.swatch')) i.style.borderColor = i.dataset.colour;
  fig.dataset.points = String(points);
  fig.dataset.max = String(max);
}

function drawCharts() {
  for (const c of CHARTS) drawChart(c, lastNow);
}

/* ---- header and stream cards ---- */

function renderServer(server = {}) {
  const facts = [
    ['version', text(server.version)],
    ['uptime', num(server.now_ms) === null || num(server.started_ms) === null ? '–'
      : fmtDuration(server.now_ms - server.started_ms)],
    ['durability', text(server.durability)],
    ['data', text(server.data_dir)],
    ['RSS', fmtBytes(num(server.rss_bytes))],
    ['connections', text(num(server.connections))],
    ['open files', text(num(server.open_files))],
    ['auth', server.auth === true ? 'on' : server.auth === false ? 'off' : '–'],
  ];
  $('server').replaceChildren(...facts.map(([k, v]) => el('div', {}, el('dt', {}, k), el('dd', { title: v }, v))));
}

/** A hash key (decimal string) as a fraction of the hash space, or null. */
function hashFraction(key, plusOne = false) {
  try {
    const k = BigInt(String(key)) + (plusOne ? 1n : 0n);
    return Number((k * 1_000_000n) / HASH_SPACE) / 1_000_000;
  } catch {
    return null;
  }
}
const pct = (f) => (f === null ? '?' : `${(f * 100).toFixed(f === 0 || f === 1 ? 0 : 1)}%`);

/** Shards as boxes over the hash space (vertical) by generation (left to right), parents linked to children. */
function lineage(shards) {
  const byId = new Map(shards.map((s) => [s.id, s]));
  const parentsOf = (s) => [s.parent, s.adjacent_parent].filter((p) => p && byId.has(p));
  const depth = new Map();
  const depthOf = (s, seen = new Set()) => {
    if (depth.has(s.id)) return depth.get(s.id);
    if (seen.has(s.id)) return 0; // a cycle in bad data: stop
    seen.add(s.id);
    const d = Math.max(-1, ...parentsOf(s).map((p) => depthOf(byId.get(p), seen))) + 1;
    depth.set(s.id, d);
    return d;
  };
  shards.forEach((s) => depthOf(s));
  const W = 280;
  const H = 160;
  const cols = depth.size ? Math.max(...depth.values()) + 1 : 1;
  const colW = W / cols;
  const boxW = Math.min(90, colW * 0.62);
  const box = (s) => {
    const y0 = (hashFraction(s.start_hash) ?? 0) * H;
    const y1 = (hashFraction(s.end_hash, true) ?? 1) * H;
    return { x: depth.get(s.id) * colW + 2, y0, y1 };
  };
  const edges = [];
  const boxes = [];
  for (const s of shards) {
    const b = box(s);
    for (const p of parentsOf(s)) {
      const pb = box(byId.get(p));
      const yMid = (Math.max(b.y0, pb.y0) + Math.min(b.y1, pb.y1)) / 2;
      edges.push(svg('path', { class: 'edge', d: `M${pb.x + boxW},${yMid}H${b.x}` }));
    }
    const h = Math.max(2, b.y1 - b.y0 - 2);
    const tip = `${s.id} (${s.open ? 'open' : 'closed'})\nhash ${s.start_hash} – ${s.end_hash}` +
      (parentsOf(s).length ? `\nparents ${parentsOf(s).join(', ')}` : '');
    const label = h >= 14 && boxW >= 28
      ? svg('text', { x: b.x + boxW / 2, y: b.y0 + 1 + h / 2 + 4, 'text-anchor': 'middle' }, shardLabel(s.id))
      : null;
    boxes.push(svg('g', { 'data-shard': s.id, 'data-parent': s.parent, 'data-adjacent-parent': s.adjacent_parent },
      svg('title', {}, tip),
      svg('rect', { class: `shard ${s.open ? 'open' : 'closed'}`, x: b.x, y: b.y0 + 1, width: boxW, height: h, rx: 3 }),
      label));
  }
  return svg('svg', { class: 'lineage', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': 'shard lineage' }, edges, boxes);
}

function shardTable(shards) {
  const rows = shards.map((s) => el('tr', { class: s.open ? 'open' : 'closed' },
    el('td', { title: text(s.id) }, shardLabel(s.id)),
    el('td', {}, s.open ? 'open' : 'closed'),
    el('td', { title: `${text(s.start_hash)} – ${text(s.end_hash)}` },
      `${pct(hashFraction(s.start_hash))} – ${pct(hashFraction(s.end_hash, true))}`),
    el('td', {}, [s.parent, s.adjacent_parent].filter(Boolean).map(shardLabel).join(' + ') || '–'),
    el('td', { class: 'num' }, fmtMs(num(s.iterator_age_ms)))));
  return el('table', { class: 'shards' }, el('thead', {}, el('tr', {}, ['shard', 'state', 'hash range', 'parents',
    'iterator age'].map((h) => el('th', {}, h)))), el('tbody', {}, rows));
}

function consumersTable(consumers) {
  if (consumers.length === 0) return el('p', { class: 'muted' }, 'No enhanced fan-out consumers.');
  const rows = consumers.map((c) => el('tr', { 'data-consumer': text(c.name) },
    el('td', { title: text(c.arn) }, text(c.name)),
    el('td', {}, el('span', { class: `badge ${String(c.status).toLowerCase()}` }, text(c.status))),
    el('td', { class: 'num' }, fmtMs(num(c.millis_behind_latest))),
    el('td', { class: 'subs' }, list(c.subscriptions).map((sub) => el('span', { class: 'sub' },
      `${shardLabel(sub.shard)} ${fmtMs(num(sub.millis_behind_latest))} behind`)),
    list(c.subscriptions).length ? null : 'none'),
    el('td', { class: 'num' }, fmtCount(num(c.counters?.subscribe_event_records)))));
  return el('table', { class: 'consumers' }, el('thead', {}, el('tr', {}, ['consumer', 'status', 'behind latest',
    'active subscriptions', 'records pushed'].map((h) => el('th', {}, h)))), el('tbody', {}, rows));
}

function streamCard(s) {
  const shards = list(s.shards).filter((sh) => sh && sh.id);
  const open = shards.filter((sh) => sh.open).length;
  const fact = (k, v) => el('div', {}, el('dt', {}, k), el('dd', {}, v));
  return el('article', { class: 'stream', 'data-stream': text(s.name) },
    el('header', {}, el('h2', { title: text(s.arn) }, text(s.name)),
      el('span', { class: `badge ${String(s.status).toLowerCase()}` }, text(s.status)),
      el('span', { class: 'badge mode' }, text(s.mode)),
      s.encrypted ? el('span', { class: 'badge' }, 'encrypted') : null),
    el('dl', { class: 'facts' },
      fact('retention', num(s.retention_hours) === null ? '–' : `${s.retention_hours} h`),
      fact('shards', `${open} open, ${shards.length - open} closed`),
      fact('on disk', fmtBytes(num(s.disk_bytes))),
      fact('iterator age', fmtMs(num(s.iterator_age_ms))),
      fact('records/s', fmtCount(latest('records', text(s.name)))),
      fact('monitoring', list(s.enhanced_monitoring).join(', ') || 'off')),
    el('div', { class: 'shard-view' }, lineage(shards), shardTable(shards)),
    consumersTable(list(s.consumers)));
}

function renderStreams(streams) {
  const sorted = list(streams).filter((s) => s && s.name).sort((a, b) => String(a.name).localeCompare(b.name));
  $('streams').replaceChildren(...(sorted.length ? sorted.map(streamCard)
    : [el('p', { class: 'muted' }, 'No streams yet: create one with the AWS CLI or an SDK.')]));
}

/* ---- polling ---- */

function setStatus(state, message, banner = null) {
  document.body.dataset.state = state;
  $('status').textContent = message;
  $('status').className = `status ${state}`;
  $('banner').hidden = banner === null;
  $('banner').textContent = banner ?? '';
}

/** The parsed state, or null after showing why there is none (not reachable, denied, an HTTP error). */
async function fetchState() {
  let res;
  let state;
  try {
    res = await fetch(STATE_URL, { credentials: 'same-origin', cache: 'no-store',
      headers: { accept: 'application/json' }, signal: AbortSignal.timeout(30_000) });
    state = res.ok ? await res.json() : null;
  } catch (err) {
    setStatus('offline', 'offline', `No answer from eddy (${err.message}); retrying every second.`);
    return null;
  }
  if (res.status === 401 || res.status === 403) {
    setStatus('denied', `HTTP ${res.status}`, res.status === 401
      ? 'Access denied (HTTP 401): this eddy runs with --credentials. ' +
        'Reload the page and sign in when the browser asks.'
      : 'Access denied (HTTP 403): these credentials may not read the dashboard state.');
  } else if (!res.ok) {
    setStatus('error', `HTTP ${res.status}`, `GET ${STATE_URL} failed with HTTP ${res.status}; retrying.`);
  }
  return res.ok ? state ?? {} : null;
}

async function poll() {
  try {
    const state = await fetchState();
    if (state !== null) {
      lastNow = num(state.server?.now_ms) ?? Date.now();
      sample(state, lastNow);
      renderServer(state.server ?? {});
      renderStreams(state.streams);
      drawCharts();
      setStatus('live', `live · ${new Date(lastNow).toLocaleTimeString()}`);
    }
  } catch (err) {
    console.error(err); // a bug of this page, not of the server: tests look for console errors
    setStatus('error', 'error', `The dashboard failed to draw the state: ${err.message}`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

setupCharts();
drawCharts();
window.addEventListener('resize', drawCharts);
poll();
