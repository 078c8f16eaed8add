// Building DOM without HTML strings: every piece of text goes in as a text node or through
// textContent, so nothing a server or a person typed can become markup (no innerHTML anywhere).

import { formatDate } from './i18n.js';

/**
 * Creates an element. `props`: `class`, `text`, `on<event>` handlers, boolean attributes
 * (true sets, false/null omits) and plain attributes. Children: nodes, strings (as text), arrays,
 * null/false (skipped).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

let uid = 0;
/** A fresh id for label/aria wiring. */
export function id(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: label, control, optional hint, wired with for/aria-describedby. */
export function field({ label, control, hint }) {
  const fid = control.id || id('field');
  control.id = fid;
  let hintEl = null;
  if (hint) {
    hintEl = h('p', { class: 'hint', id: `${fid}-hint` }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, h('label', { for: fid }, label), hintEl, control);
}

/** A message box: `kind` is info, ok, warn or error. Errors are announced at once. */
export function note(kind, ...children) {
  const role = kind === 'error' ? 'alert' : 'status';
  return h('div', { class: `note note-${kind}`, role }, ...children);
}

/** A button that runs `action` (async), disabling itself meanwhile so nothing is sent twice. */
export function actionButton(text, action, props = {}) {
  const button = h('button', { type: 'button', ...props }, text);
  button.addEventListener('click', async () => {
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      await action(button);
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  });
  return button;
}

/** A date and time in the language shown, or the raw value when it does not parse. */
export const when = formatDate;
