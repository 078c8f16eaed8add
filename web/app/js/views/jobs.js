// Bulk jobs (operators): upload a file of add/remove operations, watch a job's progress live,
// pause, resume or cancel it, and the job history. A job's report is counts by reason only:
// never who was added, who was already a member, or who was refused (INV-1, INV-3).

import { h, field, note, actionButton, when } from '../dom.js';
import { get, post, upload, seg, ApiError } from '../api.js';

const STATE = {
  queued: 'Queued: waiting for a worker',
  running: 'Running',
  paused: 'Paused',
  succeeded: 'Finished',
  failed: 'Failed',
  cancelled: 'Cancelled',
};
const FINAL = ['succeeded', 'failed', 'cancelled'];
const POLL_MS = 1000;

const num = (n) => Number(n || 0).toLocaleString();

function notOperator() {
  return {
    title: 'Bulk jobs',
    node: h('section', { class: 'narrow' }, h('h1', null, 'Bulk jobs'),
      note('info', 'Bulk jobs are for operators. Ask your IT team if you need people added to many groups at once.')),
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
    h('h3', null, `Malformed lines${total ? ` (${num(total)})` : ''}`),
    h('div', { class: 'table-wrap' }, h('table', null,
      h('caption', { class: 'sr-only' }, 'Malformed lines'),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Line'), h('th', { scope: 'col' }, 'Why'))),
      h('tbody', null, errors.map((e) => h('tr', null, h('td', null, String(e.line)), h('td', null, e.reason)))))));
}

function uploadForm(ctx) {
  const file = h('input', { type: 'file', name: 'file', accept: '.csv,.ndjson,.jsonl,text/csv,application/x-ndjson', required: true });
  const out = h('div');
  const rid = 'bad-reject';
  const sid = 'bad-skip';
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Upload and start');
  const form = h('form', {
    class: 'stack',
    onsubmit: async (ev) => {
      ev.preventDefault();
      out.replaceChildren();
      const f = file.files && file.files[0];
      if (!f) {
        out.replaceChildren(note('error', 'Choose a file to upload.'));
        file.focus();
        return;
      }
      const onBad = form.querySelector('input[name=on_bad_lines]:checked').value;
      submit.disabled = true;
      try {
        // One key per upload: a retried request answers the same job instead of a second one.
        const { data } = await upload(`/bulk/v1/jobs?${new URLSearchParams({ on_bad_lines: onBad, name: f.name.slice(0, 200) })}`, f, formatOf(f), { 'idempotency-key': crypto.randomUUID() });
        ctx.flash('ok', `Job started with ${num(data.total)} operation${data.total === 1 ? '' : 's'}.`);
        ctx.go(`#/jobs/${seg(data.id)}`);
      } catch (e) {
        const errs = e instanceof ApiError && e.problem && e.problem.errors;
        out.replaceChildren(note('error', e.message), lineErrors(errs, e.problem && e.problem.invalid_lines));
        submit.disabled = false;
      }
    },
  },
  field({ label: 'File of operations', control: file, hint: 'CSV with a header op,group_id,subject,email, or NDJSON with one {"op":"add"|"remove","group_id":…,"email":…} per line. Up to 1,000,000 operations.' }),
  h('fieldset', { class: 'choices' }, h('legend', null, 'If some lines are malformed'),
    h('div', { class: 'choice' }, h('input', { type: 'radio', name: 'on_bad_lines', id: rid, value: 'reject', checked: true }),
      h('label', { for: rid }, h('strong', null, 'Refuse the whole file'), h('span', { class: 'choice-text' }, 'Nothing runs; you get the bad lines to fix.'))),
    h('div', { class: 'choice' }, h('input', { type: 'radio', name: 'on_bad_lines', id: sid, value: 'skip' }),
      h('label', { for: sid }, h('strong', null, 'Skip them'), h('span', { class: 'choice-text' }, 'The good lines run; the bad ones are listed in the report.')))),
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
  if (!jobs.length) return h('p', { class: 'empty' }, 'No jobs yet.');
  return h('div', { class: 'table-wrap' }, h('table', null,
    h('caption', { class: 'sr-only' }, 'Job history, newest first'),
    h('thead', null, h('tr', null, ['Job', 'File', 'Submitted', 'By', 'State', 'Done'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, jobs.map((j) => {
      const p = progressOf(j);
      return h('tr', null,
        h('td', null, h('a', { href: `#/jobs/${seg(j.id)}`, 'aria-label': `Job ${String(j.id).slice(0, 8)}` }, h('code', null, String(j.id).slice(0, 8)))),
        h('td', null, j.name || '—'),
        h('td', null, when(j.created_at)),
        h('td', null, j.submitted_by),
        h('td', null, STATE[j.state] || j.state),
        h('td', null, `${num(p.done)} of ${num(p.total)}`));
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
      e instanceof ApiError && e.unsupported ? 'Bulk jobs are not available on this server yet.' : e.message);
  }
  return {
    title: 'Bulk jobs',
    node: h('section', null,
      h('h1', null, 'Bulk jobs'),
      h('p', { class: 'lead' }, 'Add or remove many people at once. Reports give counts by reason only: never who was already a member.'),
      h('section', { class: 'panel', 'aria-labelledby': 'upload-h' }, h('h2', { id: 'upload-h' }, 'Upload a file'), uploadForm(ctx)),
      h('section', { class: 'panel', 'aria-labelledby': 'history-h' }, h('h2', { id: 'history-h' }, 'Job history'), list)),
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
  if (job.state === 'queued' || job.state === 'running') buttons.push(steer('pause', 'Pause', ''));
  if (job.state === 'paused') buttons.push(steer('resume', 'Resume', 'primary'));
  if (!FINAL.includes(job.state)) buttons.push(steer('cancel', 'Cancel job', 'danger'));
  return [
    h('p', { class: 'job-state' }, h('span', { class: `state state-${job.state}` }, STATE[job.state] || job.state)),
    h('div', { class: 'progress-row' },
      h('progress', { max: 100, value: pct, 'aria-label': 'Progress', 'aria-valuetext': `${pct}%, ${num(p.done)} of ${num(p.total)} operations` }),
      h('span', { class: 'progress-text' }, `${pct}% · ${num(p.done)} of ${num(p.total)} operations`)),
    h('dl', { class: 'facts' },
      h('dt', null, 'Applied'), h('dd', null, num(job.applied), h('span', { class: 'hint' }, ' (added or removed, whether or not it changed anything)')),
      h('dt', null, 'Refused'), h('dd', null, num(job.rejected),
        h('ul', { class: 'rules' },
          h('li', null, `Unknown person: ${num(r.unknown_identity)}`),
          h('li', null, `Refused by the group’s label: ${num(r.label_refused)}`),
          h('li', null, `Group not active: ${num(r.unknown_group)}`))),
      h('dt', null, 'Malformed lines skipped'), h('dd', null, num(job.invalid_lines)),
      job.retrying ? [h('dt', null, 'Being retried'), h('dd', null, num(job.retrying))] : null,
      h('dt', null, 'Speed'), h('dd', null, `${Number(job.rate_per_sec || 0).toLocaleString()} operations a second`),
      job.eta_secs != null ? [h('dt', null, 'Time left'), h('dd', null, `about ${num(job.eta_secs)} s`)] : null,
      h('dt', null, 'Submitted'), h('dd', null, `${when(job.created_at)} by ${job.submitted_by}`),
      job.started_at ? [h('dt', null, 'Started'), h('dd', null, when(job.started_at))] : null,
      job.finished_at ? [h('dt', null, 'Ended'), h('dd', null, when(job.finished_at))] : null),
    job.error ? note('error', `Why it failed: ${job.error}`) : null,
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
      return { title: 'Job not found', node: h('section', null, h('h1', null, 'Job not found'), h('p', null, h('a', { href: '#/jobs' }, 'Back to bulk jobs'))) };
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
      live.textContent = `Job ${STATE[job.state] || job.state}.`;
      last = job.state;
    }
    schedule();
  }
  draw();
  schedule();
  return {
    title: `Job ${String(job.id).slice(0, 8)}`,
    node: h('section', null,
      h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Bulk jobs'), ' / Job'),
      h('h1', null, `Job ${String(job.id).slice(0, 8)}`),
      job.name ? h('p', { class: 'lead' }, 'From the file ', h('code', null, job.name)) : null,
      live,
      errors,
      body),
  };
}
