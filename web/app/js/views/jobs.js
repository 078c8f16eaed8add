// Bulk jobs (operators): upload a file of add/remove operations, watch a job's progress live,
// pause, resume or cancel it, and the job history. A job's report is counts by reason only:
// never who was added, who was already a member, or who was refused (INV-1, INV-3).

import { h, field, note, actionButton, when } from '../dom.js';
import { get, post, upload, seg, ApiError } from '../api.js';
import { t, formatNumber } from '../i18n.js';

const STATE = {
  queued: () => t('jobs.state.queued'),
  running: () => t('jobs.state.running'),
  paused: () => t('jobs.state.paused'),
  succeeded: () => t('jobs.state.succeeded'),
  failed: () => t('jobs.state.failed'),
  cancelled: () => t('jobs.state.cancelled'),
};
/** A job's state in words. */
const stateText = (s) => (Object.hasOwn(STATE, s) ? STATE[s]() : s);
const FINAL = ['succeeded', 'failed', 'cancelled'];
const POLL_MS = 1000;

const num = (n) => formatNumber(n);

function notOperator() {
  return {
    title: t('nav.jobs'),
    node: h('section', { class: 'narrow' }, h('h1', null, t('nav.jobs')),
      note('info', t('jobs.operators_only'))),
  };
}

function formatOf(file) {
  const name = file.name.toLowerCase();
  if (name.endsWith('.csv') || file.type === 'text/csv') return 'text/csv';
  return 'application/x-ndjson';
}

function lineErrors(errors, total) {
  if (!errors || !errors.length) return null;
  return h('div', null,
    h('h3', null, total ? t('jobs.malformed_n', { count: Number(total) }) : t('jobs.malformed')),
    h('div', { class: 'table-wrap' }, h('table', null,
      h('caption', { class: 'sr-only' }, t('jobs.malformed')),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('jobs.col.line')), h('th', { scope: 'col' }, t('jobs.col.why')))),
      h('tbody', null, errors.map((e) => h('tr', null, h('td', null, String(e.line)), h('td', null, e.reason)))))));
}

function uploadForm(ctx) {
  const file = h('input', { type: 'file', name: 'file', accept: '.csv,.ndjson,.jsonl,text/csv,application/x-ndjson', required: true });
  const out = h('div');
  const rid = 'bad-reject';
  const sid = 'bad-skip';
  const submit = h('button', { type: 'submit', class: 'primary' }, t('jobs.upload.submit'));
  const form = h('form', {
    class: 'stack',
    onsubmit: async (ev) => {
      ev.preventDefault();
      out.replaceChildren();
      const f = file.files && file.files[0];
      if (!f) {
        out.replaceChildren(note('error', t('jobs.upload.no_file')));
        file.focus();
        return;
      }
      const onBad = form.querySelector('input[name=on_bad_lines]:checked').value;
      submit.disabled = true;
      try {
        // One key per upload: a retried request answers the same job instead of a second one.
        const { data } = await upload(`/bulk/v1/jobs?${new URLSearchParams({ on_bad_lines: onBad, name: f.name.slice(0, 200) })}`, f, formatOf(f), { 'idempotency-key': crypto.randomUUID() });
        ctx.flash('ok', t('jobs.started', { count: Number(data.total) }));
        ctx.go(`#/jobs/${seg(data.id)}`);
      } catch (e) {
        const errs = e instanceof ApiError && e.problem && e.problem.errors;
        out.replaceChildren(note('error', e.message), lineErrors(errs, e.problem && e.problem.invalid_lines));
        submit.disabled = false;
      }
    },
  },
  field({ label: t('jobs.upload.file'), control: file, hint: t('jobs.upload.file_hint', { header: 'op,group_id,subject,email', line: '{"op":"add"|"remove","group_id":…,"email":…}', max: 1_000_000 }) }),
  h('fieldset', { class: 'choices' }, h('legend', null, t('jobs.upload.bad_lines')),
    h('div', { class: 'choice' }, h('input', { type: 'radio', name: 'on_bad_lines', id: rid, value: 'reject', checked: true }),
      h('label', { for: rid }, h('strong', null, t('jobs.upload.reject')), h('span', { class: 'choice-text' }, t('jobs.upload.reject_hint')))),
    h('div', { class: 'choice' }, h('input', { type: 'radio', name: 'on_bad_lines', id: sid, value: 'skip' }),
      h('label', { for: sid }, h('strong', null, t('jobs.upload.skip')), h('span', { class: 'choice-text' }, t('jobs.upload.skip_hint'))))),
  h('div', { class: 'actions' }, submit),
  // Under the button that was pressed, where the eye and the screen reader are next.
  out);
  return form;
}

function progressOf(job) {
  const done = Number(job.applied || 0) + Number(job.rejected || 0);
  return { done, total: Number(job.total || 0) };
}

function history(jobs) {
  if (!jobs.length) return h('p', { class: 'empty' }, t('jobs.none'));
  const cols = [t('jobs.col.job'), t('jobs.col.file'), t('jobs.col.submitted'), t('jobs.col.by'), t('jobs.col.state'), t('jobs.col.done')];
  return h('div', { class: 'table-wrap' }, h('table', null,
    h('caption', { class: 'sr-only' }, t('jobs.history_caption')),
    h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, jobs.map((j) => {
      const p = progressOf(j);
      return h('tr', null,
        h('td', null, h('a', { href: `#/jobs/${seg(j.id)}`, 'aria-label': t('jobs.job', { id: String(j.id).slice(0, 8) }) }, h('code', null, String(j.id).slice(0, 8)))),
        h('td', null, j.name || '—'),
        h('td', null, when(j.created_at)),
        h('td', null, j.submitted_by),
        h('td', null, stateText(j.state)),
        h('td', null, t('jobs.n_of', { done: p.done, total: p.total })));
    }))));
}

export async function jobsView(ctx) {
  if (!ctx.user.roles.includes('operator')) return notOperator();
  let list;
  try {
    list = history((await get('/bulk/v1/jobs?limit=50')).data.jobs || []);
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return notOperator();
    list = note(e instanceof ApiError && e.unsupported ? 'info' : 'error',
      e instanceof ApiError && e.unsupported ? t('jobs.unsupported') : e.message);
  }
  return {
    title: t('nav.jobs'),
    node: h('section', null,
      h('h1', null, t('nav.jobs')),
      h('p', { class: 'lead' }, t('jobs.lead')),
      h('section', { class: 'panel', 'aria-labelledby': 'upload-h' }, h('h2', { id: 'upload-h' }, t('jobs.upload.heading')), uploadForm(ctx)),
      h('section', { class: 'panel', 'aria-labelledby': 'history-h' }, h('h2', { id: 'history-h' }, t('jobs.history')), list)),
  };
}

function jobBody(job, onChange, onError) {
  const p = progressOf(job);
  const pct = p.total ? Math.round((p.done / p.total) * 100) : (FINAL.includes(job.state) ? 100 : 0);
  const r = job.rejected_by_reason || {};
  const steer = (verb, label, cls) => actionButton(label, async () => {
    try {
      await post(`/bulk/v1/jobs/${seg(job.id)}/${verb}`);
      onError(null);
    } catch (e) {
      onError(e.message);
    }
    await onChange();
  }, { class: cls });
  const buttons = [];
  if (job.state === 'queued' || job.state === 'running') buttons.push(steer('pause', t('jobs.pause'), ''));
  if (job.state === 'paused') buttons.push(steer('resume', t('jobs.resume'), 'primary'));
  if (!FINAL.includes(job.state)) buttons.push(steer('cancel', t('jobs.cancel'), 'danger'));
  const percent = formatNumber(pct / 100, { style: 'percent' });
  const progress = t('jobs.progress', { percent, done: p.done, total: p.total });
  return [
    h('p', { class: 'job-state' }, h('span', { class: `state state-${job.state}` }, stateText(job.state))),
    h('div', { class: 'progress-row' },
      h('progress', { max: 100, value: pct, 'aria-label': t('jobs.progress_label'), 'aria-valuetext': progress }),
      h('span', { class: 'progress-text' }, progress)),
    h('dl', { class: 'facts' },
      h('dt', null, t('jobs.applied')), h('dd', null, num(job.applied), ' ', h('span', { class: 'hint' }, t('jobs.applied_hint'))),
      h('dt', null, t('jobs.refused')), h('dd', null, num(job.rejected),
        h('ul', { class: 'rules' },
          h('li', null, t('jobs.refused.unknown_identity', { n: Number(r.unknown_identity || 0) })),
          h('li', null, t('jobs.refused.label_refused', { n: Number(r.label_refused || 0) })),
          h('li', null, t('jobs.refused.unknown_group', { n: Number(r.unknown_group || 0) })))),
      h('dt', null, t('jobs.skipped')), h('dd', null, num(job.invalid_lines)),
      job.retrying ? [h('dt', null, t('jobs.retrying')), h('dd', null, num(job.retrying))] : null,
      h('dt', null, t('jobs.speed')), h('dd', null, t('jobs.speed_value', { rate: Number(job.rate_per_sec || 0) })),
      job.eta_secs != null ? [h('dt', null, t('jobs.eta')), h('dd', null, t('jobs.eta_value', { secs: Number(job.eta_secs) }))] : null,
      h('dt', null, t('jobs.col.submitted')), h('dd', null, t('jobs.submitted_by', { date: when(job.created_at), who: job.submitted_by })),
      job.started_at ? [h('dt', null, t('jobs.started_at')), h('dd', null, when(job.started_at))] : null,
      job.finished_at ? [h('dt', null, t('jobs.ended_at')), h('dd', null, when(job.finished_at))] : null),
    job.error ? note('error', t('jobs.why_failed', { error: job.error })) : null,
    lineErrors(job.line_errors, job.invalid_lines),
    buttons.length ? h('div', { class: 'actions' }, buttons) : null,
  ];
}

export async function jobView(ctx) {
  const [id] = ctx.params;
  let job;
  try {
    job = (await get(`/bulk/v1/jobs/${seg(id)}`)).data;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      return { title: t('jobs.not_found'), node: h('section', null, h('h1', null, t('jobs.not_found')), h('p', null, h('a', { href: '#/jobs' }, t('jobs.back')))) };
    }
    throw e;
  }
  const body = h('div', { class: 'job' });
  const errors = h('div');
  const onError = (msg) => errors.replaceChildren(...(msg ? [note('error', msg)] : []));
  // Announced to screen readers when the state changes, not on every tick.
  const live = h('p', { class: 'sr-only', role: 'status' });
  let last = job.state;
  let timer = null;
  const schedule = () => {
    clearTimeout(timer);
    if (!FINAL.includes(job.state)) timer = setTimeout(refresh, POLL_MS);
  };
  const draw = () => {
    // Keep keyboard focus on a steering button that survives the redraw.
    const focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement.textContent : null;
    body.replaceChildren(...jobBody(job, refresh, onError).filter(Boolean));
    if (focused) {
      const again = [...body.querySelectorAll('button')].find((b) => b.textContent === focused);
      if (again) again.focus();
    }
  };
  async function refresh() {
    if (!ctx.stillHere()) return;
    try {
      job = (await get(`/bulk/v1/jobs/${seg(id)}`)).data;
    } catch {
      // Keep showing the last answer; the next tick tries again.
    }
    if (!ctx.stillHere()) return;
    draw();
    if (job.state !== last) {
      live.textContent = t('jobs.announce', { state: stateText(job.state) });
      last = job.state;
    }
    schedule();
  }
  draw();
  schedule();
  return {
    title: t('jobs.job', { id: String(job.id).slice(0, 8) }),
    node: h('section', null,
      h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, t('nav.jobs')), ' / ', t('jobs.crumb')),
      h('h1', null, t('jobs.job', { id: String(job.id).slice(0, 8) })),
      job.name ? h('p', { class: 'lead' }, t('jobs.from_file'), ' ', h('code', null, job.name)) : null,
      live,
      errors,
      body),
  };
}
