// Use an invite code. A link from an owner carries the code in the address's fragment
// (#/redeem?code=…), which browsers never send to any server.

import { h, field, note } from '../dom.js';
import { get, post, seg } from '../api.js';
import { redeemError } from './group.js';
import { t } from '../i18n.js';

export async function redeemView(ctx) {
  const code = h('input', { name: 'code', autocomplete: 'off', spellcheck: 'false', required: true, maxlength: 200 });
  code.value = ctx.query.get('code') || '';
  if (code.value) history.replaceState(null, '', '#/redeem'); // keep the code out of history
  const out = h('div');
  const submit = h('button', { type: 'submit', class: 'primary' }, t('redeem.submit'));
  const form = h(
    'form',
    {
      class: 'stack',
      onsubmit: async (ev) => {
        ev.preventDefault();
        out.replaceChildren();
        if (!code.value.trim()) {
          out.replaceChildren(note('error', t('redeem.empty')));
          code.focus();
          return;
        }
        submit.disabled = true;
        try {
          const { data } = await post('/membership/v1/invites/redeem', { code: code.value.trim() });
          let name = t('redeem.the_group');
          try {
            name = (await get(`/control/v1/groups/${seg(data.group_id)}`)).data.name;
          } catch {
            // The name is a courtesy; the membership is what matters.
          }
          ctx.flash('ok', t('group.joined', { name }));
          ctx.go(`#/groups/${seg(data.group_id)}`);
        } catch (e) {
          out.replaceChildren(note('error', redeemError(e)));
          submit.disabled = false;
          code.focus();
        }
      },
    },
    field({ label: t('redeem.code'), control: code, hint: t('redeem.code_hint') }),
    out,
    h('div', { class: 'actions' }, submit),
  );
  return {
    title: t('redeem.title'),
    node: h(
      'section',
      { class: 'narrow' },
      h('h1', null, t('redeem.title')),
      h('p', { class: 'lead' }, t('redeem.lead')),
      form,
    ),
  };
}
