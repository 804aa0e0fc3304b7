// The selection bar: run, method, input, target, probe, compare-with, top-k, signed.

import { el, setOptions } from '../dom';
import { RunInfo } from '../model';
import { Selection, clampK } from '../selection';

type Change = (change: Partial<Selection>) => void;

function field(label: string, control: HTMLElement): HTMLLabelElement {
  return el('label', { class: 'field' }, el('span', {}, label), control);
}

export class Controls {
  readonly element: HTMLElement;
  private readonly run = el('select', { name: 'run' });
  private readonly method = el('select', { name: 'method' });
  private readonly input = el('select', { name: 'input' });
  private readonly target = el('select', { name: 'target' });
  private readonly probe = el('select', { name: 'probe' });
  private readonly compare = el('select', { name: 'compare' });
  private readonly k = el('input', { name: 'k', type: 'number', min: 1, max: 50, step: 1 });
  private readonly signed = el('input', { name: 'signed', type: 'checkbox' });
  private readonly inputField: HTMLLabelElement;

  constructor(onChange: Change) {
    this.inputField = field('Input', this.input);
    const previous = el('button', { type: 'button', class: 'step-probe', title: 'Previous probe', 'aria-label': 'previous probe' }, '‹');
    const next = el('button', { type: 'button', class: 'step-probe', title: 'Next probe', 'aria-label': 'next probe' }, '›');
    this.element = el(
      'nav',
      { class: 'controls', 'aria-label': 'selection' },
      field('Run', this.run),
      field('Method', this.method),
      this.inputField,
      field('Target', this.target),
      el('span', { class: 'field probe-field' }, field('Probe', this.probe), previous, next),
      field('Compare with', this.compare),
      field('Top-k', this.k),
      el('label', { class: 'field check' }, this.signed, el('span', {}, 'Signed')),
    );
    this.run.addEventListener('change', () => onChange({ run: this.run.value }));
    this.method.addEventListener('change', () => onChange({ method: this.method.value }));
    this.input.addEventListener('change', () => onChange({ input: this.input.value }));
    this.target.addEventListener('change', () => onChange({ target: this.target.value }));
    this.probe.addEventListener('change', () => onChange({ probe: Number(this.probe.value) }));
    this.compare.addEventListener('change', () => onChange({ compare: this.compare.value }));
    this.k.addEventListener('change', () => {
      const k = Math.round(Number(this.k.value));
      if (k >= 1) onChange({ k: clampK(k) });
    });
    this.signed.addEventListener('change', () => onChange({ signed: this.signed.checked }));
    const moveProbe = (delta: number) => {
      const options = this.probe.options.length;
      if (options) onChange({ probe: (Number(this.probe.value) + delta + options) % options });
    };
    previous.addEventListener('click', () => moveProbe(-1));
    next.addEventListener('click', () => moveProbe(1));
  }

  /** Shows `selection` (already made consistent with `runs`) in the controls. */
  show(runs: RunInfo[], selection: Selection, classNames: string[], classCount = classNames.length): void {
    const run = runs.find((r) => r.run === selection.run);
    setOptions(this.run, runs.map((r) => ({ value: r.run, label: r.run })), selection.run);
    const methods = run ? run.methods.filter((m) => m.inputs.length > 0) : [];
    setOptions(this.method, methods.map((m) => ({ value: m.method, label: m.method })), selection.method);
    const inputs = methods.find((m) => m.method === selection.method)?.inputs ?? [];
    setOptions(this.input, inputs.map((i) => ({ value: i.input, label: `${i.input} (${i.modality || 'tensor'})` })), selection.input);
    this.inputField.hidden = inputs.length <= 1;
    setOptions(
      this.target,
      [
        { value: 'all', label: 'all probes' },
        ...Array.from({ length: Math.max(classCount, classNames.length) }, (_, i) => ({
          value: String(i),
          label: classNames[i] !== undefined && classNames[i] !== '' ? `class ${i}: ${classNames[i]}` : `class ${i}`,
        })),
      ],
      selection.target,
    );
    const count = run?.probe_count ?? 0;
    setOptions(this.probe, Array.from({ length: count }, (_, i) => ({ value: String(i), label: `probe ${i}` })), String(selection.probe));
    const others = methods.filter((m) => m.method !== selection.method && m.inputs.some((i) => i.input === selection.input));
    setOptions(this.compare, [{ value: '', label: 'none' }, ...others.map((m) => ({ value: m.method, label: m.method }))], selection.compare);
    this.k.value = String(selection.k);
    this.signed.checked = selection.signed;
  }
}
