// The selection bar: run (and runs compared with it), method, input, probes counted, probe, compare-with,
// top-k, signed; and the line naming the selected method's logged configuration.

import { runColor } from '../colors';
import { el, formatValue, setOptions } from '../dom';
import { InputInfo, ProbeEntry, ProbeMenu, RunInfo, hasClasses, hasData } from '../model';
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

/** A probe as the menu offers it: label, prediction at the menu's step (✓ right, ✗ wrong), ⇄ when it flipped, its change. */
export function probeLabel(entry: ProbeEntry): string {
  const parts = [`probe ${entry.probe}`];
  if (entry.label !== null) parts.push(`label ${entry.label_name ?? (Array.isArray(entry.label) ? entry.label.map((v) => formatValue(v)).join(', ') : formatValue(entry.label))}`);
  if (entry.prediction !== null) {
    const mark = entry.correct === true ? ' ✓' : entry.correct === false ? ' ✗' : '';
    parts.push(`predicts ${entry.prediction_name ?? formatValue(entry.prediction)}${mark}`);
  }
  if (entry.flipped) parts.push('⇄ flipped');
  if (entry.change !== null) parts.push(`change ${entry.change.toFixed(2)}`);
  return parts.join(' · ');
}

/** The probes in menu order: by index, or by change of explanation (largest first, unknown last). */
export function probeOrder(entries: ProbeEntry[], order: string): ProbeEntry[] {
  if (order !== 'change') return [...entries].sort((a, b) => a.probe - b.probe);
  return [...entries].sort((a, b) => (b.change ?? -Infinity) - (a.change ?? -Infinity) || a.probe - b.probe);
}

export const PROBE_MENU_STYLE = `
select.probe-menu { max-width: 440px; }
select[name=probe-order] { max-width: 150px; }
`;

export class Controls {
  readonly element: HTMLElement;
  private readonly run = el('select', { name: 'run' });
  private readonly compareRuns = el('div', { class: 'run-list', role: 'group', 'aria-label': 'runs compared' });
  private readonly runsButton = el('button', { type: 'button', class: 'runs-button', 'aria-expanded': 'false', 'aria-haspopup': 'true' });
  private readonly method = el('select', { name: 'method' });
  private readonly input = el('select', { name: 'input' });
  private readonly target = el('select', { name: 'target' });
  private readonly probe = el('select', { name: 'probe', class: 'probe-menu' });
  private readonly probeOrder = el('select', { name: 'probe-order', 'aria-label': 'probe order' });
  /** The server's probe menu for the shown run, method, input and step; null until it arrives. */
  private menu: ProbeMenu | null = null;
  private shown: { count: number; selection: Selection } | null = null;
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
        el('span', { class: 'field probe-field' }, field('Probe', this.probe), previous, next, field('Order', this.probeOrder)),
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
    this.probeOrder.addEventListener('change', () => onChange({ probeOrder: this.probeOrder.value }));
    this.compare.addEventListener('change', () => onChange({ compare: this.compare.value }));
    this.k.addEventListener('change', () => {
      const k = Math.round(Number(this.k.value));
      if (k >= 1) onChange({ k: clampK(k) });
    });
    this.signed.addEventListener('change', () => onChange({ signed: this.signed.checked }));
    // The neighbour in the menu's order (by index, or by change).
    const moveProbe = (delta: number) => {
      const options = this.probe.options;
      if (options.length) onChange({ probe: Number(options[(this.probe.selectedIndex + delta + options.length) % options.length].value) });
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
    this.shown = { count: run?.probe_count ?? 0, selection };
    this.showProbes();
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
    this.showProbes();
  }

  /** Takes the server's probe menu (null: none for this selection, plain "probe N" entries). */
  showProbeMenu(menu: ProbeMenu | null): void {
    this.menu = menu;
    this.showProbes();
  }

  private showProbes(): void {
    if (!this.shown) return;
    const { count, selection } = this.shown;
    const menu = this.menu;
    const byIndex = new Map((menu?.probes ?? []).map((p) => [p.probe, p]));
    const entries = Array.from({ length: count }, (_, i): ProbeEntry => byIndex.get(i) ?? {
      probe: i, label: null, label_name: null, prediction: null, prediction_name: null, correct: null, flipped: false, flip_steps: [], change: null,
    });
    const order = menu ? selection.probeOrder : 'index';
    setOptions(this.probe, probeOrder(entries, order).map((e) => ({ value: String(e.probe), label: `${byIndex.has(e.probe) ? probeLabel(e) : `probe ${e.probe}`}${this.probeTexts?.[e.probe] ? ` · ${this.probeTexts[e.probe]}` : ''}` })), String(selection.probe));
    for (const option of Array.from(this.probe.options)) {
      const entry = byIndex.get(Number(option.value));
      if (!entry) continue;
      option.dataset.flipped = String(entry.flipped);
      if (entry.change !== null) option.dataset.change = String(entry.change);
      if (entry.flip_steps.length) option.title = `prediction flipped at step${entry.flip_steps.length === 1 ? '' : 's'} ${entry.flip_steps.join(', ')}`;
    }
    this.probe.title = menu
      ? `Predictions at step ${menu.step} (✓ right, ✗ wrong against the label); ⇄: the prediction differs from the first logged step's; ` +
        `change: 1 − Spearman of the probe's |attribution| map between the first logged step and step ${menu.step}.`
      : '';
    setOptions(this.probeOrder, [{ value: 'index', label: 'by index' }, { value: 'change', label: 'by change' }], selection.probeOrder);
    this.probeOrder.disabled = !menu || !menu.probes.some((p) => p.change !== null);
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
