// The dashboard: pages over the operator API, refreshed every two seconds. Everything a device
// or an operator wrote is put in the page as text (textContent), never as HTML.
'use strict';

const state = { me: null, csrf: null, sort: { key: 'id', dir: 1 }, filter: '' };
const page = document.getElementById('page');

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (opts.method && opts.method !== 'GET') {
    headers['X-CSRF-Token'] = state.csrf;
    headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(path, { credentials: 'same-origin', ...opts, headers });
  const text = await r.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = text;
  }
  if (r.status === 401) {
    location.href = '/login';
  }
  if (!r.ok) throw new Error(body && body.message ? `${body.message} (${body.error})` : `${r.status}`);
  return body;
}

const canAct = () => state.me && (state.me.role === 'operator' || state.me.role === 'admin');
const pct = (bp) => (bp === null || bp === undefined ? '-' : `${(bp / 100).toFixed(2)}%`);
const ms = (us) => (us === null || us === undefined ? '-' : `${(us / 1000).toFixed(2)} ms`);
const bytes = (n) => (n === null || n === undefined ? '-' : `${n} B`);
const when = (t) => (t ? new Date(t).toLocaleString() : 'never');
const online = (d) => d.last_seen_ms && Date.now() - d.last_seen_ms < 5 * 60 * 1000;

function table(headers, rows, attrs) {
  return h(
    'table',
    attrs || {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headers.map((c) => h('th', { scope: 'col' }, c)),
      ),
    ),
    h(
      'tbody',
      {},
      rows.map((r) =>
        h(
          'tr',
          {},
          r.map((c) => h('td', {}, c)),
        ),
      ),
    ),
  );
}

function countBy(items, key) {
  const m = new Map();
  for (const i of items) {
    const k = key(i) ?? 'none';
    m.set(k, (m.get(k) || 0) + 1);
  }
  return [...m.entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
}

async function overview() {
  // The running model's own figures (sortable), and the last release the device rejected.
  const devices = (await api('/api/devices')).map((d) => ({
    ...d,
    accuracy: d.model_validation?.accuracy_bp ?? null,
    p99: d.model_validation?.p99_us ?? null,
    rejected: d.last_rejected?.version ?? null,
  }));
  const up = devices.filter(online).length;
  const tags = (d) => (d.tags ? d.tags.split(',') : ['(none)']);
  const perTag = new Map();
  for (const d of devices)
    for (const t of tags(d)) {
      const e = perTag.get(t) || { n: 0, up: 0 };
      e.n += 1;
      e.up += online(d) ? 1 : 0;
      perTag.set(t, e);
    }
  return [
    h('h1', {}, 'Fleet overview'),
    h(
      'div',
      { class: 'cards' },
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Devices'),
        h('p', { id: 'devices-total' }, `${devices.length} enrolled, ${up} online, ${devices.length - up} offline`),
      ),
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Firmware'),
        table(
          ['version', 'devices'],
          countBy(devices, (d) => d.firmware_version),
        ),
      ),
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Model'),
        table(
          ['version', 'devices'],
          countBy(devices, (d) => d.model_version),
        ),
      ),
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Boards'),
        table(
          ['board', 'devices'],
          countBy(devices, (d) => d.board),
        ),
      ),
    ),
    h('h2', {}, 'By tag'),
    table(
      ['tag', 'devices', 'online', 'offline'],
      [...perTag.entries()].sort().map(([t, e]) => [t, e.n, e.up, e.n - e.up]),
    ),
  ];
}

function devicesControls() {
  return h(
    'p',
    {},
    h('label', { for: 'filter' }, 'Filter '),
    h('input', {
      id: 'filter',
      type: 'search',
      value: state.filter,
      oninput: (e) => {
        state.filter = e.target.value;
        refresh();
      },
    }),
  );
}

async function devicesPage() {
  // The running model's own figures (sortable), and the last release the device rejected.
  const devices = (await api('/api/devices')).map((d) => ({
    ...d,
    accuracy: d.model_validation?.accuracy_bp ?? null,
    p99: d.model_validation?.p99_us ?? null,
    rejected: d.last_rejected?.version ?? null,
  }));
  const cols = [
    ['id', 'Device'],
    ['board', 'Board'],
    ['tags', 'Tags'],
    ['firmware_version', 'Firmware'],
    ['model_version', 'Model'],
    ['model_slot', 'Slot'],
    ['accuracy', 'Accuracy'],
    ['p99', 'p99'],
    ['rejected', 'Last rejected'],
    ['last_seen_ms', 'Last seen'],
  ];
  const f = state.filter.toLowerCase();
  const shown = devices.filter(
    (d) =>
      !f ||
      [d.id, d.board, d.tags, d.firmware_version, d.model_version].some((v) =>
        String(v ?? '')
          .toLowerCase()
          .includes(f),
      ),
  );
  const { key, dir } = state.sort;
  shown.sort((a, b) => ((a[key] ?? '') > (b[key] ?? '') ? 1 : (a[key] ?? '') < (b[key] ?? '') ? -1 : 0) * dir);
  const head = h(
    'tr',
    {},
    cols.map(([k, label]) =>
      h(
        'th',
        { scope: 'col', 'aria-sort': key === k ? (dir > 0 ? 'ascending' : 'descending') : 'none' },
        h(
          'button',
          {
            type: 'button',
            onclick: () => {
              state.sort = { key: k, dir: key === k ? -dir : 1 };
              refresh();
            },
          },
          label,
        ),
      ),
    ),
  );
  const rows = shown.map((d) =>
    h(
      'tr',
      {},
      h('td', {}, d.id),
      h('td', {}, d.board),
      h('td', {}, d.tags),
      h('td', {}, d.firmware_version ?? '-'),
      h('td', {}, d.model_version ?? '-'),
      h('td', {}, d.model_slot === null ? '-' : d.model_slot ? 'B' : 'A'),
      h('td', {}, pct(d.accuracy)),
      h('td', {}, ms(d.p99)),
      h('td', {}, d.rejected ? `${d.last_rejected.version}: ${pct(d.last_rejected.accuracy_bp)} / ${ms(d.last_rejected.p99_us)}` : '-'),
      h('td', { class: online(d) ? 'ok' : 'muted' }, when(d.last_seen_ms)),
    ),
  );
  return [
    h('h1', {}, 'Devices'),
    h('p', {}, `${shown.length} of ${devices.length}`),
    h('table', { id: 'devices' }, h('thead', {}, head), h('tbody', {}, rows)),
  ];
}

async function artifactsPage(id) {
  if (id) {
    const a = await api(`/api/artifacts/${id}`);
    return [
      h('h1', {}, `Artifact ${a.id}: ${a.kind} ${a.name} ${a.version}`),
      a.bad_reason ? h('p', { class: 'bad' }, `Marked bad: ${a.bad_reason}`) : null,
      table(
        ['field', 'value'],
        [
          ['boards', a.boards],
          ['security counter', a.security_counter],
          ['signing key ids', a.signing_key_ids.join(', ')],
          ['payload', `${a.payload_len} bytes, sha256 ${a.payload_sha256}`],
          ['runtime ABI', a.runtime_abi ?? '-'],
          ['required ABI', a.required_abi ?? '-'],
          ['arena', a.arena_size ?? '-'],
          [
            'device policy',
            a.policy
              ? `accuracy >= ${pct(a.policy.min_accuracy_bp)}, p99 <= ${ms(a.policy.max_p99_latency_us)}, drop <= ${pct(a.policy.max_accuracy_drop_bp)}`
              : '-',
          ],
        ],
      ),
      h('h2', {}, 'Components'),
      table(
        ['kind', 'name', 'version', 'bytes', 'sha256'],
        a.components.map((c) => [c.kind, c.name, c.version, c.size, c.sha256]),
      ),
      h('h2', {}, `Running on ${a.running_on.length} devices`),
      h('p', {}, a.running_on.join(', ') || '-'),
    ];
  }
  const list = await api('/api/artifacts');
  return [
    h('h1', {}, 'Artifacts'),
    table(
      ['id', 'kind', 'name', 'version', 'counter', 'boards', 'bytes', 'status'],
      list.map((a) => [
        h('a', { href: `#/artifacts/${a.id}` }, String(a.id)),
        a.kind,
        a.name,
        a.version,
        a.security_counter,
        a.boards,
        a.payload_len,
        a.bad_reason ? h('span', { class: 'bad' }, 'bad') : 'ok',
      ]),
    ),
  ];
}

function createForm(artifacts) {
  const field = (id, label, attrs) => [h('label', { for: id }, label), h('input', { id, name: id, ...attrs })];
  const status = h('p', { id: 'create-status', role: 'status' });
  const form = h(
    'form',
    {
      class: 'inline',
      id: 'create-rollout',
      onsubmit: async (e) => {
        e.preventDefault();
        const v = (id) => form.querySelector(`#${id}`).value.trim();
        const num = (id) => (v(id) === '' ? undefined : Number(v(id)));
        const body = {
          artifact_id: Number(v('artifact')),
          selector: {
            tags: v('tags')
              ? v('tags')
                  .split(',')
                  .map((t) => t.trim())
              : [],
          },
          stages: v('stages')
            .split(',')
            .map((s) => s.trim()),
          soak_seconds: num('soak'),
          min_accuracy: num('min-accuracy'),
          max_latency_ms: num('max-latency'),
          max_failure_rate: num('max-failure-rate'),
          max_accuracy_drop: num('max-drop'),
        };
        try {
          const r = await api('/api/rollouts', { method: 'POST', body: JSON.stringify(body) });
          location.hash = `#/rollouts/${r.id}`;
        } catch (err) {
          status.textContent = `Refused: ${err.message}`;
          status.className = 'error';
        }
      },
    },
    h('label', { for: 'artifact' }, 'Release'),
    h(
      'select',
      { id: 'artifact', required: true },
      artifacts.filter((a) => !a.bad_reason).map((a) => h('option', { value: a.id }, `${a.id}: ${a.kind} ${a.name} ${a.version}`)),
    ),
    field('tags', 'Tags (all of)', { placeholder: 'line-1' }),
    field('stages', 'Stages', { value: '10%,50%,100%', required: true }),
    field('soak', 'Soak (seconds)', { type: 'number', min: 0, value: 5 }),
    field('min-accuracy', 'Min accuracy (0-1)', { type: 'number', step: 'any', min: 0, max: 1, value: 0.9 }),
    field('max-latency', 'Max p99 (ms)', { type: 'number', step: 'any', min: 0, value: 10 }),
    field('max-failure-rate', 'Max failure rate (0-1)', { type: 'number', step: 'any', min: 0, max: 1, value: 0 }),
    field('max-drop', 'Max accuracy drop (0-1)', { type: 'number', step: 'any', min: 0, max: 1 }),
    h('span', {}),
    h('button', { id: 'create', type: 'submit' }, 'Start rollout'),
  );
  return [h('h2', {}, 'New rollout'), form, status];
}

// A bar per stage with the gate's threshold as a dashed line; readable in both color schemes.
function chart(id, title, values, threshold, fmt, higherIsBetter) {
  const W = 420,
    H = 160,
    pad = 30,
    bw = 50;
  const max = Math.max(threshold || 0, ...values.map((v) => v.value || 0)) * 1.15 || 1;
  const y = (v) => H - pad - (v / max) * (H - 2 * pad);
  const ns = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const svg = el('svg', {
    id,
    width: W,
    height: H,
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': `${title}: ${values.map((v) => `${v.label} ${v.value === null ? 'no data' : fmt(v.value)}`).join(', ')}; threshold ${fmt(threshold)}`,
  });
  svg.append(el('title', {}, title));
  values.forEach((v, i) => {
    const x = pad + i * (bw + 30);
    if (v.value !== null && v.value !== undefined) {
      const fails = higherIsBetter ? v.value < threshold : v.value > threshold;
      svg.append(el('rect', { class: fails ? 'value fails' : 'value', x, y: y(v.value), width: bw, height: H - pad - y(v.value) }));
      svg.append(el('text', { x, y: y(v.value) - 4 }, fmt(v.value)));
    }
    svg.append(el('text', { x, y: H - pad + 14 }, v.label));
  });
  svg.append(el('line', { class: 'threshold', x1: pad - 10, x2: W - 10, y1: y(threshold), y2: y(threshold) }));
  svg.append(el('text', { x: W - 110, y: y(threshold) - 4 }, `gate ${fmt(threshold)}`));
  return h('figure', {}, h('figcaption', {}, title), svg);
}

async function rolloutsPage(id) {
  if (id) return rolloutDetail(id);
  const [list, artifacts] = await Promise.all([api('/api/rollouts'), api('/api/artifacts')]);
  const out = [
    h('h1', {}, 'Rollouts'),
    table(
      ['id', 'release', 'state', 'stage', 'failed gate', 'by', 'started'],
      list.map((r) => [
        h('a', { href: `#/rollouts/${r.id}` }, String(r.id)),
        `${r.artifact.kind} ${r.artifact.name} ${r.artifact.version}`,
        h('span', { class: r.state === 'halted' ? 'bad' : r.state === 'completed' ? 'ok' : '' }, r.state),
        `${r.stage + 1}/${r.stages.length}`,
        r.halted_gate ?? '-',
        r.created_by,
        when(r.created_ms),
      ]),
      { id: 'rollouts' },
    ),
  ];
  if (canAct()) out.push(...createForm(artifacts));
  return out;
}

async function act(id, verb) {
  try {
    await api(`/api/rollouts/${id}/${verb}`, { method: 'POST' });
  } catch (err) {
    alert(err.message);
  }
  refresh();
}

// The page's policy forbids style attributes; a width set through the DOM is allowed.
function fill(percent) {
  const e = h('span', {});
  e.style.width = `${percent}%`;
  return e;
}

async function rolloutDetail(id) {
  const r = await api(`/api/rollouts/${id}`);
  const g = r.spec.gates;
  const stageLabel = (s) => `stage ${s.index + 1}`;
  const current = r.stages[r.stage] || null;
  // Labels and units only: each verdict is the engine's, as the server sent it.
  const gateKinds = {
    min_accuracy: ['min accuracy', pct, '>='],
    max_p99_latency: ['max p99 latency', ms, '<='],
    max_failure_rate: ['max failure rate', pct, '<='],
    min_reports: ['validated reports', String, '>='],
    max_accuracy_drop: ['max accuracy drop', pct, '<='],
  };
  const gateRow = (c) => {
    const [name, unit, cmp] = gateKinds[c.gate] || [c.gate, String, '?'];
    const verdict = c.verdict === 'waiting' ? '-' : h('span', { class: c.verdict === 'ok' ? 'ok' : 'bad' }, c.verdict);
    return [name, c.figure === null ? '-' : unit(c.figure), `${cmp} ${unit(c.threshold)}`, verdict];
  };
  const controls =
    canAct() && (r.state === 'running' || r.state === 'paused')
      ? h(
          'div',
          { class: 'controls' },
          r.state === 'running'
            ? h('button', { id: 'pause', type: 'button', onclick: () => act(id, 'pause') }, 'Pause')
            : h('button', { id: 'resume', type: 'button', onclick: () => act(id, 'resume') }, 'Resume'),
          h('button', { id: 'abort', type: 'button', onclick: () => act(id, 'abort') }, 'Abort'),
          h('button', { id: 'rollback', type: 'button', onclick: () => act(id, 'rollback') }, 'Roll back'),
        )
      : null;
  return [
    h('h1', {}, `Rollout ${r.id}: ${r.artifact.kind} ${r.artifact.name} ${r.artifact.version}`),
    h(
      'p',
      {},
      'State: ',
      h('strong', { id: 'state', class: r.state === 'halted' ? 'bad' : '' }, r.state),
      r.halted_gate ? [' — failed gate: ', h('strong', { id: 'halted-gate', class: 'bad' }, r.halted_gate)] : null,
    ),
    controls,
    h('h2', {}, 'Stages'),
    table(
      ['stage', 'size', 'progress', 'confirmed', 'failed', 'pending'],
      r.stages.map((s) => {
        const done = s.figures.confirmed + s.figures.failed;
        return [
          stageLabel(s),
          s.size.percent !== undefined ? `${s.size.percent}%` : String(s.size.count),
          h(
            'span',
            {
              class: 'bar',
              role: 'progressbar',
              'aria-label': `${stageLabel(s)} progress`,
              'aria-valuemin': 0,
              'aria-valuemax': s.planned,
              'aria-valuenow': done,
            },
            fill(s.planned ? (100 * done) / s.planned : 0),
          ),
          s.figures.confirmed,
          s.figures.failed,
          s.figures.pending,
        ];
      }),
      { id: 'stages' },
    ),
    h('h2', {}, `Gates of stage ${r.stage + 1}`),
    table(['gate', 'figure', 'threshold', ''], current ? current.gates.map(gateRow) : [], { id: 'gates' }),
    h(
      'div',
      { class: 'cards' },
      chart(
        'accuracy-chart',
        'Lowest accuracy per stage',
        r.stages.map((s) => ({ label: stageLabel(s), value: s.figures.min_accuracy_bp })),
        g.min_accuracy_bp,
        pct,
        true,
      ),
      chart(
        'latency-chart',
        'Highest p99 latency per stage',
        r.stages.map((s) => ({ label: stageLabel(s), value: s.figures.max_p99_us })),
        g.max_p99_latency_us,
        ms,
        false,
      ),
    ),
    h('h2', {}, 'Events'),
    h(
      'ol',
      { id: 'events' },
      r.events.map((e) =>
        h(
          'li',
          { class: e.kind === 'halted' || e.kind === 'device_failed' ? 'bad' : '' },
          h('time', {}, when(e.at_ms)),
          ` · stage ${e.stage + 1} · `,
          h('strong', {}, e.kind),
          ` · ${e.detail}`,
        ),
      ),
    ),
    h('h2', {}, 'Devices'),
    h('p', { id: 'bytes-sent' }, `${bytes(r.devices.reduce((sum, d) => sum + d.bytes_sent, 0))} sent to ${r.devices.length} devices`),
    table(
      ['device', 'stage', 'state', 'previous', 'accuracy', 'p99', 'sent'],
      r.devices.map((d) => [d.device_id, d.stage + 1, d.state, d.previous_version ?? '-', pct(d.accuracy_bp), ms(d.p99_us), bytes(d.bytes_sent)]),
    ),
  ];
}

async function auditPage() {
  const list = await api('/api/audit');
  return [
    h('h1', {}, 'Audit log'),
    table(
      ['time', 'who', 'role', 'action', 'target', 'detail'],
      list.map((e) => [when(e.at_ms), e.actor, e.role, e.action, e.target, e.detail]),
      { id: 'audit' },
    ),
  ];
}

let rendering = false;
async function refresh() {
  if (rendering) return;
  // Keep what the operator is typing: forms are not redrawn under them.
  const active = document.activeElement;
  if (active && active.closest && active.closest('form')) return;
  rendering = true;
  const [, section, id] = (location.hash || '#/overview').split('/');
  try {
    let content;
    switch (section) {
      case 'devices':
        content = [devicesControls(), h('div', { id: 'devices-list' }, await devicesPage())];
        break;
      case 'artifacts':
        content = await artifactsPage(id);
        break;
      case 'rollouts':
        content = await rolloutsPage(id);
        break;
      case 'audit':
        content = await auditPage();
        break;
      default:
        content = await overview();
    }
    if (section === 'devices' && document.getElementById('filter')) {
      document.getElementById('devices-list').replaceChildren(...content[1].childNodes);
    } else {
      page.replaceChildren(...content.flat().filter((c) => c));
    }
  } catch (err) {
    page.replaceChildren(h('p', { class: 'error', role: 'alert' }, `Could not load: ${err.message}`));
  } finally {
    rendering = false;
  }
}

async function start() {
  const me = await api('/session');
  state.me = me;
  state.csrf = me.csrf;
  document.getElementById('who').textContent = `${me.name} (${me.role})`;
  document.getElementById('logout').addEventListener('click', async () => {
    await api('/logout', { method: 'POST' }).catch(() => {});
    location.href = '/login';
  });
  window.addEventListener('hashchange', () => {
    page.replaceChildren();
    refresh();
  });
  refresh();
  setInterval(refresh, 2000);
}

start();
