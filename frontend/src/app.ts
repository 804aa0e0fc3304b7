// Wires the selection to the routes and the views: a change of selection is remembered, the data it needs is
// fetched (in parallel, cached), and each view draws as soon as its own data arrives.

import { el } from './dom';
import { Evolution, Query, RunInfo, dataVersion, fetchAgreement, fetchEvolution, fetchProbe, fetchRuns, fetchScalars, fetchStability, scalarsVersion } from './model';
import { onTensorBoardReload } from './reload';
import { Selection, clampK, loadSelection, saveSelection } from './selection';
import { AgreementView } from './views/agreement';
import { Card } from './views/card';
import { Controls } from './views/controls';
import { EvolutionView } from './views/evolution';
import { ProbeView } from './views/probe';
import { StabilityView } from './views/stability';
import { TopkView } from './views/topk';

/** Whether the run has data to draw: at least one method with an attribution. */
const usable = (run: RunInfo) => run.methods.some((m) => m.inputs.length > 0);

/** The number of classes a `target` may name in `run` (the server's count, else the names known). */
export function classCountOf(run: RunInfo | undefined, classNames: string[]): number {
  return Math.max(run?.class_count ?? 0, classNames.length);
}

/** Makes `s` name things that exist in `runs`, falling back to the first choice at each level. */
export function consistent(s: Selection, runs: RunInfo[], classCount: number): Selection {
  const run = runs.find((r) => r.run === s.run) ?? runs[0];
  const methods = run.methods.filter((m) => m.inputs.length > 0);
  const method = methods.find((m) => m.method === s.method) ?? methods[0];
  const input = method?.inputs.find((i) => i.input === s.input) ?? method?.inputs[0];
  const compare = methods.find((m) => m.method === s.compare && m !== method && m.inputs.some((i) => i.input === input?.input));
  const target = /^\d+$/.test(s.target) && Number(s.target) < classCount ? String(Number(s.target)) : 'all';
  const probeCount = run.probe_count ?? 0;
  return {
    ...s,
    k: clampK(s.k),
    run: run.run,
    method: method?.method ?? '',
    input: input?.input ?? '',
    compare: compare?.method ?? '',
    target,
    probe: s.probe < probeCount ? s.probe : 0,
  };
}

export class App {
  readonly element: HTMLElement;
  private runs: RunInfo[] = [];
  private ready = false; // whether a run with data was shown (the cards are visible)
  private selection: Selection = loadSelection();
  private classNames: string[] = [];
  private generation = 0;
  private readonly controls: Controls;
  private readonly evolution: EvolutionView;
  private readonly topk: TopkView;
  private readonly probe: ProbeView;
  private readonly stability: StabilityView;
  private readonly agreement: AgreementView;
  private readonly message = el('p', { class: 'message', role: 'status' });
  private readonly failures = el('ul', { class: 'failures', 'aria-label': 'method failures' });
  private readonly redraws = new Map<Card, () => void>();
  private readonly cards: HTMLElement;
  private readonly started = performance.now();

  constructor() {
    this.controls = new Controls((change) => this.change(change));
    this.evolution = new EvolutionView((rows) => this.change({ rows }), (step) => this.probe.setStep(step));
    this.topk = new TopkView((overlay) => this.change({ overlay }));
    this.probe = new ProbeView((step) => {
      this.evolution.markStep(step);
      this.agreement.markStep(step);
    });
    this.stability = new StabilityView();
    this.agreement = new AgreementView((step) => this.probe.setStep(step));
    this.element = el(
      'main',
      { class: 'tb-xai' },
      this.controls.element,
      this.message,
      this.failures,
      (this.cards = el('div', { class: 'cards' }, this.evolution.card.element, this.topk.card.element, this.stability.card.element,
        this.probe.card.element, this.agreement.card.element)),
    );
    let frame = 0;
    let lastWidth = 0;
    new ResizeObserver(() => {
      const width = this.element.clientWidth;
      if (width === lastWidth) return;
      lastWidth = width;
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => this.redraws.forEach((redraw) => redraw()));
    }).observe(this.element);
  }

  async start(): Promise<void> {
    // Subscribed first: TensorBoard never calls render() again, so a tab with nothing to show yet (or whose
    // first load failed) comes alive on a later reload.
    onTensorBoardReload(() => void this.reload());
    this.message.textContent = 'Loading runs…';
    this.cards.hidden = true;
    let runs: RunInfo[];
    try {
      runs = await fetchRuns();
    } catch (error) {
      this.message.textContent = `Could not load the runs: ${error}. TensorBoard's reload tries again.`;
      return;
    }
    this.accept(runs);
  }

  /**
   * After a TensorBoard reload: fetches the runs again and redraws when the shown run holds new data (the
   * cached answers of its older version are not reused), when runs came or went, or when the first run with
   * data appeared.
   */
  async reload(): Promise<void> {
    let runs: RunInfo[];
    try {
      runs = await fetchRuns();
    } catch (error) {
      if (!this.ready) this.message.textContent = `Could not load the runs: ${error}. TensorBoard's reload tries again.`;
      return; // the next reload tries again; what is drawn stays
    }
    this.accept(runs);
  }

  /** Takes a `runs` answer (every run, usable or not): shows the empty state, or draws what changed. */
  private accept(all: RunInfo[]): void {
    const runs = all.filter(usable);
    if (!runs.length) {
      if (!this.ready) this.showEmpty(all);
      return; // what is drawn stays
    }
    if (!this.ready) {
      this.ready = true;
      this.runs = runs;
      this.message.hidden = true;
      this.cards.hidden = false;
      this.change({});
      return;
    }
    const shown = (list: RunInfo[]) => list.find((r) => r.run === this.selection.run);
    const before = shown(this.runs);
    const after = shown(runs);
    const sameRuns = runs.map((r) => r.run).join('\n') === this.runs.map((r) => r.run).join('\n');
    this.runs = runs;
    const same = (a: RunInfo, b: RunInfo) => dataVersion(a) === dataVersion(b) && scalarsVersion(a) === scalarsVersion(b);
    if (sameRuns && before && after && same(before, after)) return;
    this.change({});
  }

  /** Nothing to draw yet: says how to log attributions, or lists why the methods that ran failed. */
  private showEmpty(all: RunInfo[]): void {
    const items = all.flatMap((run) =>
      run.methods
        .filter((m) => m.failures.length > 0)
        .map((m) => {
          const first = m.failures[0];
          const text = `${run.run}: ${m.method} failed at every step (${m.failures.length}); at step ${first.step}: ${first.message}`;
          return el('li', { title: text }, text);
        }),
    );
    this.message.hidden = false;
    this.message.textContent = items.length
      ? 'No attributions logged yet: every method the callback ran failed. The reasons:'
      : 'No attributions logged yet. Add tb_xai.AttributionCallback(...) to model.fit(callbacks=[...]) and point TensorBoard at its log_dir.';
    this.failures.replaceChildren(...items);
    this.failures.hidden = items.length === 0;
    this.cards.hidden = true;
  }

  private change(change: Partial<Selection>): void {
    const next = { ...this.selection, ...change };
    if (change.run !== undefined && change.run !== this.selection.run) {
      this.classNames = [];
      next.probe = 0;
    }
    const run = this.runs.find((r) => r.run === next.run) ?? this.runs[0];
    if (run?.class_names.length) this.classNames = run.class_names;
    this.selection = consistent(next, this.runs, classCountOf(run, this.classNames));
    saveSelection(this.selection);
    this.controls.show(this.runs, this.selection, this.classNames, classCountOf(run, this.classNames));
    this.showFailures();
    this.refresh();
  }

  /** Says which methods of the run failed, at which steps and why (a method failing everywhere has no data). */
  private showFailures(): void {
    const run = this.runs.find((r) => r.run === this.selection.run);
    const items = (run?.methods ?? [])
      .filter((m) => m.failures.length > 0)
      .map((m) => {
        const first = m.failures[0];
        const where = m.inputs.length ? `failed at ${m.failures.length} step${m.failures.length === 1 ? '' : 's'}` : 'failed at every step';
        const text = `${m.method} ${where}; at step ${first.step}: ${first.message}`;
        return el('li', { title: text }, text);
      });
    this.failures.replaceChildren(...items);
    this.failures.hidden = items.length === 0;
  }

  private refresh(): void {
    const generation = ++this.generation;
    const s = this.selection;
    const run = this.runs.find((r) => r.run === s.run)!;
    const version = dataVersion(run);
    const query: Query = { run: s.run, method: s.method, input: s.input, target: s.target, signed: s.signed, version };
    const current = () => generation === this.generation;
    const cards = [this.evolution.card, this.topk.card, this.probe.card, this.stability.card, this.agreement.card];
    cards.forEach((card) => {
      card.setStatus('Loading…');
      card.element.setAttribute('aria-busy', 'true');
    });
    const draw = (card: Card, redraw: () => void) => {
      if (!current()) return;
      card.setStatus('');
      card.element.removeAttribute('aria-busy');
      this.redraws.set(card, redraw);
      redraw();
    };
    const fail = (card: Card) => (error: unknown) => {
      if (!current()) return;
      // Nothing of the previous selection stays: no chart, no note, no redraw on resize.
      this.redraws.delete(card);
      [this.evolution, this.topk, this.probe, this.stability, this.agreement].find((view) => view.card === card)?.clear();
      card.element.removeAttribute('aria-busy');
      card.setStatus(String(error instanceof Error ? error.message : error));
    };
    const width = (card: Card) => card.figure.clientWidth;

    const evolution = fetchEvolution(query);
    evolution
      .then((data) =>
        draw(this.evolution.card, () => {
          this.evolution.show(data, { run: s.run, method: s.method, rows: s.rows }, width(this.evolution.card));
          this.noteFirstPaint();
        }),
      )
      .catch(fail(this.evolution.card));

    const scalars = run.scalar_runs.length ? fetchScalars(s.run, scalarsVersion(run)).catch(() => null) : Promise.resolve(null);
    Promise.all([evolution, scalars])
      .then(([data, curves]) =>
        draw(this.topk.card, () => this.topk.show(data, curves, { run: s.run, method: s.method, k: s.k, overlay: s.overlay }, width(this.topk.card))),
      )
      .catch(fail(this.topk.card));

    const methods = s.compare ? [s.method, s.compare] : [s.method];
    const probeQuery = (method: string) => ({ ...query, method });
    Promise.all([Promise.all(methods.map((m) => fetchProbe(probeQuery(m), s.probe))), evolution.catch((): Evolution | null => null)])
      .then(([probes, global]) => {
        if (current() && !this.classNames.length && probes[0].class_names.length) {
          this.classNames = probes[0].class_names;
          this.controls.show(this.runs, this.selection, this.classNames, classCountOf(run, this.classNames));
        }
        draw(this.probe.card, () => this.probe.show(probes, { run: s.run, rows: s.rows, order: global?.order ?? null }, width(this.probe.card)));
      })
      .catch(fail(this.probe.card));

    fetchStability(query, s.k)
      .then((data) => draw(this.stability.card, () => this.stability.show(data, s.run, s.method, width(this.stability.card))))
      .catch(fail(this.stability.card));

    fetchAgreement(query, s.k)
      .then((data) => draw(this.agreement.card, () => this.agreement.show(data, { run: s.run, input: s.input }, width(this.agreement.card))))
      .catch(fail(this.agreement.card));
  }

  /**
   * Records when the first heatmap was drawn, for the benchmark and tests: milliseconds since render(), and
   * the wall-clock time (to compare with the top page's navigation start).
   */
  private noteFirstPaint(): void {
    if (this.element.dataset.firstPaintMs) return;
    const now = performance.now();
    this.element.dataset.firstPaintMs = (now - this.started).toFixed(1);
    this.element.dataset.firstPaintAt = (performance.timeOrigin + now).toFixed(1);
  }
}
