// Create a group. The label picker explains what each label allows, and the join policies a
// label does not allow cannot be picked. Moving the group to a looser label afterwards needs a label-admin's approval.

import { h, field, note, id as newId } from '../dom.js';
import { post, seg } from '../api.js';
import { labels, badge, policyPoints, JOIN_POLICIES, joinName, joinExplain, senderChoices, GROUP_TYPES, typeName, typeExplain } from '../labels.js';
import { t } from '../i18n.js';

/** The "New group" page around `children`. */
function page(...children) {
  return { title: t('nav.new'), node: h('section', { class: 'narrow' }, h('h1', null, t('create.heading')), ...children) };
}

export async function createView(ctx) {
  if (ctx.user.kind !== 'member') {
    return page(note('info', t('create.members_only')));
  }
  const all = await labels();
  const out = h('div');

  const name = h('input', { name: 'name', required: true, maxlength: 120, autocomplete: 'off' });
  const description = h('textarea', { name: 'description', rows: 4, maxlength: 2000 });
  const address = h('input', {
    name: 'address',
    maxlength: 64,
    pattern: '[a-z0-9]([a-z0-9._\\-]*[a-z0-9])?',
    autocomplete: 'off',
    spellcheck: 'false',
  });

  // Type picker: a mail group (with an address) or a security group (no address, no mail).
  // Chosen once: a group's type never changes.
  const typeSet = h(
    'fieldset',
    { class: 'choices' },
    h('legend', null, t('create.type')),
    h('p', { class: 'hint' }, t('create.type_hint')),
    GROUP_TYPES.map((g, i) => {
      const rid = newId('type');
      return h(
        'div',
        { class: 'choice' },
        h('input', { type: 'radio', name: 'type', id: rid, value: g, checked: i === 0, 'aria-describedby': `${rid}-desc` }),
        h('label', { for: rid }, h('strong', null, typeName(g)), h('span', { class: 'choice-text', id: `${rid}-desc` }, typeExplain(g))),
      );
    }),
  );
  const chosenType = () => {
    const c = typeSet.querySelector('input[name=type]:checked');
    return c ? c.value : 'mail';
  };

  // Label picker: one radio per label, each with what it allows.
  const labelSet = h(
    'fieldset',
    { class: 'choices' },
    h('legend', null, t('create.label')),
    h('p', { class: 'hint' }, t('create.label_hint')),
    all.map((l, i) => {
      const rid = newId('label');
      const descId = `${rid}-desc`;
      return h(
        'div',
        { class: 'choice' },
        h('input', { type: 'radio', name: 'label', id: rid, value: l.name, checked: i === 0, 'aria-describedby': descId }),
        h(
          'label',
          { for: rid },
          badge(l.name),
          h('span', { class: 'choice-text', id: descId },
            h('span', null, l.description),
            h('ul', { class: 'rules' }, policyPoints(l).map((t) => h('li', null, t)))),
        ),
      );
    }),
  );

  const joinSet = h('fieldset', { class: 'choices' }, h('legend', null, t('create.join')));
  const joinRadios = JOIN_POLICIES.map((p) => {
    const rid = newId('join');
    const why = h('span', { class: 'why' });
    const input = h('input', { type: 'radio', name: 'join_policy', id: rid, value: p, 'aria-describedby': `${rid}-desc` });
    joinSet.append(
      h(
        'div',
        { class: 'choice' },
        input,
        h('label', { for: rid }, h('strong', null, joinName(p)), h('span', { class: 'choice-text', id: `${rid}-desc` }, joinExplain(p), ' ', why)),
      ),
    );
    return { p, input, why };
  });

  function syncJoin() {
    const chosen = labelSet.querySelector('input[name=label]:checked');
    const label = all.find((l) => l.name === (chosen && chosen.value));
    const allowed = (label && label.policy.join_policies) || [];
    let checkedOk = false;
    for (const r of joinRadios) {
      const ok = allowed.includes(r.p);
      r.input.disabled = !ok;
      r.why.textContent = ok ? '' : label ? t('create.not_allowed', { label: label.name }) : t('create.not_allowed_this');
      if (!ok) r.input.checked = false;
      if (ok && r.input.checked) checkedOk = true;
    }
    if (!checkedOk) {
      const first = joinRadios.find((r) => !r.input.disabled);
      if (first) first.input.checked = true;
    }
  }
  // Who may mail it: at most what the chosen label allows, redrawn when the label changes.
  let senderSet = h('div');
  function syncSenders() {
    const chosen = labelSet.querySelector('input[name=label]:checked');
    const label = all.find((l) => l.name === (chosen && chosen.value));
    const before = senderSet.querySelector('input[name=sender_policy]:checked');
    const next = senderChoices(label, before && before.value);
    next.hidden = chosenType() === 'security';
    senderSet.replaceWith(next);
    senderSet = next;
  }
  labelSet.addEventListener('change', () => {
    syncJoin();
    syncSenders();
  });
  syncJoin();

  // A security group has no address and takes no mail: its mail settings are not offered.
  const addressPanel = h(
    'details',
    { class: 'panel' },
    h('summary', null, t('create.address')),
    field({
      label: t('create.address_label'),
      control: address,
      hint: t('create.address_hint'),
    }),
  );
  typeSet.addEventListener('change', () => {
    const security = chosenType() === 'security';
    senderSet.hidden = security;
    addressPanel.hidden = security;
  });

  const submit = h('button', { type: 'submit', class: 'primary' }, t('create.submit'));
  const form = h(
    'form',
    {
      class: 'stack',
      novalidate: false,
      onsubmit: async (ev) => {
        ev.preventDefault();
        out.replaceChildren();
        const label = labelSet.querySelector('input[name=label]:checked');
        const join = joinSet.querySelector('input[name=join_policy]:checked');
        if (!name.value.trim()) {
          out.replaceChildren(note('error', t('create.name_missing')));
          name.focus();
          return;
        }
        const body = {
          name: name.value.trim(),
          description: description.value,
          label: label && label.value,
          join_policy: join && join.value,
          type: chosenType(),
        };
        if (body.type === 'mail') {
          const senders = senderSet.querySelector('input[name=sender_policy]:checked');
          if (senders) body.sender_policy = senders.value;
          if (address.value.trim()) body.address = address.value.trim();
        }
        submit.disabled = true;
        try {
          const { data } = await post('/control/v1/groups', body);
          ctx.flash('ok', t('create.created', { name: data.name }));
          ctx.go(`#/groups/${seg(data.id)}/manage`);
        } catch (e) {
          out.replaceChildren(note('error', e.message));
          submit.disabled = false;
        }
      },
    },
    field({ label: t('create.name'), control: name, hint: t('create.name_hint', { max: 120 }) }),
    field({ label: t('create.description'), control: description, hint: t('create.description_hint') }),
    typeSet,
    labelSet,
    joinSet,
    senderSet,
    addressPanel,
    out,
    h('div', { class: 'actions' }, submit),
  );

  syncSenders();
  return page(
    h('p', { class: 'lead' }, t('create.lead')),
    form,
  );
}
