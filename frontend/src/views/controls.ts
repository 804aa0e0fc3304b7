// The selection bar: run (and runs compared with it), method, input, probes counted, probe, compare-with,
// top-k, signed; and the line naming the selected method's logged configuration.

import { runColor } from '../colors';
import { el, setOptions } from '../dom';
import { InputInfo, RunInfo, hasClasses, hasData } from '../model';
import { RUN_SEPARATOR, Selection, clampK, otherRuns } from '../selection';

type Change = (change: Partial<Selection>) => void;

function field(label: string, control: HTMLElement): HTMLLabelElement {
  return el('label', { class: 'field' }, el('span', {}, label), control);
}

/** A method's logged parameters as one line: "steps=50 · baseline=0.0". */
export function configText(config: Record<string, unknown>): string {
  const text = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));
  return Object.entries(config).map(([key, value]) => `${key}=${text(value)}`).join(' · ');
}

/** How a run is offered: its name, and why a run without attributions has nothing to draw. */
function runLabel(run: RunInfo): string {
  if (hasData(run)) return run.run;
  const failed = run.methods.filter((m) => m.failures.length > 0).length;
  return failed ? `${run.run} (failed: no attributions)` : `${run.run} (no attributions yet)`;
}

export class Controls {
  readonly element: HTMLElement;
  private readonly run = el('select', { name: 'run' });
  private readonly compareRuns = el('div', { class: 'run-list', role: 'group', 'aria-label': 'runs compared' });
  private readonly runsButton = el('button', { type: 'button', class: 'runs-button', 'aria-expanded': 'false', 'aria-haspopup': 'true' });
  private readonly method = el('select', { name: 'method' });
  private readonly input = el('select', { name: 'input' });
  private readonly target = el('select', { name: 'target' });
  private readonly probe = el('select', { name: 'probe' });
  private readonly compare = el('select', { name: 'compare' });
  private readonly k = el('input', { name: 'k', type: 'number', min: 1, max: 50, step: 1 });
  private readonly signed = el('input', { name: 'signed', type: 'checkbox' });
  private readonly inputField: HTMLLabelElement;
  private readonly targetField: HTMLLabelElement;
  private readonly runsField: HTMLElement;
  readonly config = el('p', { class: 'config', 'aria-label': 'method configuration' });
  private probeTexts: string[] | null = null; // a text input's probes by their first words
  readonly legend = el('div', { class: 'run-legend', 'aria-label': 'run colours' });

  constructor(private readonly onChange: Change) {
    this.inputField = field('Input', this.input);
    this.targetField = field('Probes counted', this.target);
    this.target.title = 'Average only the probes whose explained class was this class at each step';
    const previous = el('button', { type: 'button', class: 'step-probe', title: 'Previous probe', 'aria-label': 'previous probe' }, '‹');
    const next = el('button', { type: 'button', class: 'step-probe', title: 'Next probe', 'aria-label': 'next probe' }, '›');
    this.runsField = el('span', { class: 'field runs-field' }, el('span', {}, 'Compare runs'), this.runsButton, this.compareRuns);
    this.compareRuns.hidden = true;
    this.element = el(
      'nav',
      { class: 'controls', 'aria-label': 'selection' },
      el('div', { class: 'control-row' },
        field('Run', this.run),
        this.runsField,
        field('Method', this.method),
        this.inputField,
        this.targetField,
        el('span', { class: 'field probe-field' }, field('Probe', this.probe), previous, next),
        field('Compare with', this.compare),
        field('Top-k', this.k),
        el('label', { class: 'field check' }, this.signed, el('span', {}, 'Signed')),
      ),
      this.legend,
      this.config,
    );
    this.runsButton.addEventListener('click', () => {
      this.compareRuns.hidden = !this.compareRuns.hidden;
      this.runsButton.setAttribute('aria-expanded', String(!this.compareRuns.hidden));
    });
    document.addEventListener('click', (event) => {
      if (!this.runsField.contains(event.target as Node)) {
        this.compareRuns.hidden = true;
        this.runsButton.setAttribute('aria-expanded', 'false');
      }
    });
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
  show(runs: RunInfo[], selection: Selection, classNames: string[]): void {
    const run = runs.find((r) => r.run === selection.run);
    setOptions(this.run, runs.map((r) => ({ value: r.run, label: runLabel(r) })), selection.run);
    this.showRunList(runs, selection);
    const methods = run ? run.methods.filter((m) => m.inputs.length > 0) : [];
    setOptions(this.method, methods.map((m) => ({ value: m.method, label: m.method })), selection.method);
    const inputs = methods.find((m) => m.method === selection.method)?.inputs ?? [];
    setOptions(this.input, inputs.map((i) => ({ value: i.input, label: `${i.input} (${i.modality || 'tensor'})` })), selection.input);
    this.inputField.hidden = inputs.length <= 1;
    const classCount = run ? Math.max(run.class_count, run.class_names.length, classNames.length) : 0;
    this.targetField.hidden = !run || !hasClasses(run);
    setOptions(
      this.target,
      [
        { value: 'all', label: 'all probes' },
        ...Array.from({ length: classCount }, (_, i) => ({
          value: String(i),
          label: `explained as ${classNames[i] !== undefined && classNames[i] !== '' ? `${classNames[i]} (class ${i})` : `class ${i}`}`,
        })),
      ],
      selection.target,
    );
    const count = run?.probe_count ?? 0;
    setOptions(this.probe, Array.from({ length: count }, (_, i) => ({ value: String(i), label: this.probeLabel(i) })), String(selection.probe));
    const others = methods.filter((m) => m.method !== selection.method && m.inputs.some((i) => i.input === selection.input));
    setOptions(this.compare, [{ value: '', label: 'none' }, ...others.map((m) => ({ value: m.method, label: m.method }))], selection.compare);
    this.k.value = String(selection.k);
    this.signed.checked = selection.signed;
    const info: InputInfo | undefined = inputs.find((i) => i.input === selection.input);
    const config = info ? configText(info.config) : '';
    this.config.textContent = info ? `${selection.method} configuration: ${config || 'defaults (none logged)'}` : '';
    this.config.hidden = !info;
    const compared = [selection.run, ...otherRuns(selection)];
    this.legend.replaceChildren(...(compared.length > 1
      ? compared.map((name, i) => el('span', { class: 'run-chip', 'data-run': name },
        el('span', { class: 'swatch', style: `background:${runColor(compared, name)}` }), i === 0 ? `${name} (A, baseline)` : `${name} (${String.fromCharCode(66 + i - 1)})`))
      : []));
    this.legend.hidden = compared.length < 2;
  }

  /** Labels a text input's probes by their first words (null: the probes of another modality). */
  setProbeTexts(texts: string[] | null): void {
    this.probeTexts = texts;
    Array.from(this.probe.options).forEach((option, i) => { option.textContent = this.probeLabel(i); });
  }

  private probeLabel(i: number): string {
    const text = this.probeTexts?.[i];
    return text ? `probe ${i} · ${text}` : `probe ${i}`;
  }

  private showRunList(runs: RunInfo[], selection: Selection): void {
    const others = otherRuns(selection);
    const compared = [selection.run, ...others];
    const usable = runs.filter(hasData);
    this.runsButton.textContent = others.length ? `${others.length + 1} runs ▾` : 'none ▾';
    this.runsButton.disabled = usable.length < 2;
    this.compareRuns.replaceChildren(...usable.map((r) => {
      const box = el('input', { type: 'checkbox', name: 'compare-run', value: r.run });
      box.checked = r.run === selection.run || others.includes(r.run);
      box.disabled = r.run === selection.run;
      box.addEventListener('change', () => {
        const next = box.checked ? [...others, r.run] : others.filter((o) => o !== r.run);
        this.onChange({ runs: next.join(RUN_SEPARATOR) });
      });
      const swatch = compared.includes(r.run) ? el('span', { class: 'swatch', style: `background:${runColor(compared, r.run)}` }) : el('span', { class: 'swatch' });
      return el('label', { class: 'run-option' }, box, swatch, r.run);
    }));
  }
}
