// Operators' screen: offboard a person who left the company. control-api asks the tenant to take
// them out of every group and erase their identity, and every token they hold stops working.
// The answer is the same whether or not Hush knew the person, so this screen cannot be used to
// find out who was in any group.

import { h, field, note } from '../dom.js';
import { post } from '../api.js';
import { t } from '../i18n.js';
import { notYourScreen } from './breakglass.js';

export const OPERATOR = 'operator';

export async function offboardView(ctx) {
  const title = t('offboard.title');
  if (!ctx.user.roles.includes(OPERATOR)) return notYourScreen(title, OPERATOR);
  const out = h('div');
  const who = h('input', { name: 'who', autocomplete: 'off', spellcheck: 'false', maxlength: 256, required: true });
  const sure = h('input', { type: 'checkbox', name: 'sure', id: 'offboard-sure' });
  const submit = h('button', { type: 'submit', class: 'danger' }, t('offboard.submit'));
  const form = h(
    'form',
    {
      class: 'stack panel',
      onsubmit: async (ev) => {
        ev.preventDefault();
        out.replaceChildren();
        const value = who.value.trim();
        if (!value) {
          out.replaceChildren(note('error', t('offboard.need_who')));
          who.focus();
          return;
        }
        if (!sure.checked) {
          out.replaceChildren(note('error', t('offboard.need_sure')));
          sure.focus();
          return;
        }
        submit.disabled = true;
        try {
          await post('/control/v1/identities/offboard', value.includes('@') ? { email: value } : { subject: value });
          who.value = '';
          sure.checked = false;
          out.replaceChildren(note('ok', t('offboard.done', { who: value })));
        } catch (e) {
          out.replaceChildren(note('error', e.message));
        } finally {
          submit.disabled = false;
        }
      },
    },
    field({ label: t('offboard.who'), control: who, hint: t('offboard.who_hint') }),
    h('div', { class: 'check' }, sure, h('label', { for: 'offboard-sure' }, t('offboard.sure'))),
    out,
    h('div', { class: 'actions' }, submit),
  );
  return {
    title,
    node: h('section', { class: 'narrow' }, h('h1', null, title), h('p', { class: 'lead' }, t('offboard.lead')), form),
  };
}
