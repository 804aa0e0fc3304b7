// Wires the selection to the routes and the views: a change of selection is remembered, every view in the
// registry fetches what it needs (in parallel, cached) and draws as soon as its own data arrives.

import { runColor } from './colors';
import { el } from './dom';
import { Finding, Query, RunInfo, analysisVersion, fetchProbeMenu, fetchRuns, fetchTokens, hasData, latestRun } from './model';
import { onTensorBoardReload } from './reload';
import { RUN_SEPARATOR, Selection, clampK, loadSelection, otherRuns, saveSelection } from './selection';
import { followTheme } from './theme';
import { AgreementView } from './views/agreement';
import { Controls } from './views/controls';
import { EvolutionView } from './views/evolution';
import { FindingsView } from './views/findings';
import { ProbeView } from './views/probe';
import { QualityView } from './views/quality';
import { StabilityView } from './views/stability';
import { firstWords, isTextInput } from './views/text';
import { TopkView } from './views/topk';
import { Draw, Shown, View, ViewContext } from './views/view';

/** While a shown run grows, the runs are fetched this often; when it stops, less and less often. */
export const POLL_FAST_MS = 5000;
const POLL_SLOW_MS = 60000;

/** The methods of `run` that hold attributions. */
const methodsOf = (run: RunInfo) => run.methods.filter((m) => m.inputs.length > 0);

/**
 * Makes `s` name things that exist in `runs`, falling back at each level: the run to the most recently written
 * run with data, then the first method, input... Runs compared with it must hold its method and input.
 */
export function consistent(s: Selection, runs: RunInfo[], classCount: number): Selection {
  const run = runs.find((r) => r.run === s.run) ?? latestRun(runs) ?? runs[0];
  const methods = methodsOf(run);
  const method = methods.find((m) => m.method === s.method) ?? methods[0];
  const input = method?.inputs.find((i) => i.input === s.input) ?? method?.inputs[0];
  const compare = methods.find((m) => m.method === s.compare && m !== method && m.inputs.some((i) => i.input === input?.input));
  const target = /^\d+$/.test(s.target) && Number(s.target) < classCount ? String(Number(s.target)) : 'all';
  const probeCount = run.probe_count ?? 0;
  const others = otherRuns({ ...s, run: run.run }).filter((name) => runs.some((r) => r.run === name && hasData(r)));
  return {
    ...s,
    k: clampK(s.k),
    run: run.run,
    runs: others.join(RUN_SEPARATOR),
    probeRun: others.includes(s.probeRun) ? s.probeRun : '',
    method: method?.method ?? '',
    input: input?.input ?? '',
    compare: compare?.method ?? '',
    target,
    probe: s.probe < probeCount ? s.probe : 0,
    by: s.by === 'position' ? 'position' : 'word',
  };
}

export class App {
  readonly element: HTMLElement;
  private runs: RunInfo[] = [];
  private selection: Selection = loadSelection();
  private classNames: string[] = [];
  private generation = 0;
  private readonly controls: Controls;
  private readonly evolution: EvolutionView;
  private readonly probe: ProbeView;
  private readonly agreement: AgreementView;
  /** Every card, in page order; each is fetched and drawn alike. */
  private readonly views: View[];
  /** Cards whose answers are computed over every step (findings, noise floors): fetched after the evolution card's, to keep first paint fast. */
  private readonly deferred: Set<View>;
  private readonly message = el('p', { class: 'message', role: 'status' });
  private readonly live = el('p', { class: 'live', role: 'status' });
  private readonly failures = el('ul', { class: 'failures', 'aria-label': 'method failures' });
  private readonly draws = new Map<View, Draw>();
  private readonly cards: HTMLElement;
  private readonly started = performance.now();
  private pollTimer: number | undefined;
  private pollDelay = POLL_FAST_MS;
  private probeTextsKey = '';
  /** The step the probe explorer shows (the probe menu's predictions are at it); null before it draws. */
  private probeStep: number | null = null;
  private menuKey = '';
  private menuTimer: number | undefined;
  /** The card to scroll to once drawn: the one a clicked finding opened. */
  private pendingScroll: string | null = null;

  constructor() {
    this.controls = new Controls((change) => this.change(change));
    this.evolution = new EvolutionView((rows) => this.change({ rows }), (step) => this.probe.setStep(step), (by) => this.change({ by }));
    const topk = new TopkView((overlay) => this.change({ overlay }));
    this.probe = new ProbeView((probeRun) => this.change({ probeRun }), (step) => {
      this.evolution.markStep(step);
      this.agreement.markStep(step);
      if (step !== this.probeStep) {
        this.probeStep = step;
        this.scheduleProbeMenu();
      }
    }, (names) => {
      this.classNames = names;
      this.controls.show(this.runs, this.selection, this.classNames);
    });
    const stability = new StabilityView();
    this.agreement = new AgreementView((step) => this.probe.setStep(step));
    const findings = new FindingsView((finding) => this.open(finding));
    const quality = new QualityView();
    this.views = [findings, this.evolution, topk, stability, this.probe, this.agreement, quality];
    this.deferred = new Set<View>([findings, stability, quality]);
    this.element = el(
      'main',
      { class: 'tb-xai' },
      this.controls.element,
      this.message,
      this.live,
      this.failures,
      (this.cards = el('div', { class: 'cards' }, ...this.views.map((v) => v.card.element))),
    );
    this.live.hidden = true;
    let frame = 0;
    let lastWidth = 0;
    new ResizeObserver(() => {
      const width = this.element.clientWidth;
      if (width === lastWidth) return;
      lastWidth = width;
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => this.redrawAll());
    }).observe(this.element);
    followTheme(() => {
      this.controls.show(this.runs, this.selection, this.classNames);
      this.redrawAll();
    });
  }

  async start(): Promise<void> {
    // Subscribed first: TensorBoard never calls render() again, so a tab with nothing to show yet (or whose
    // first load failed) comes alive on a later reload.
    onTensorBoardReload(() => void this.reload());
    this.message.textContent = 'Loading runs…';
    this.cards.hidden = true;
    await this.reload();
    this.schedulePoll();
  }

  /**
   * Fetches the runs again and redraws when a shown run holds new data (the cached answers of its older
   * version are not reused), when runs came or went, or when the first run with data appeared. Returns
   * whether anything changed.
   */
  async reload(): Promise<boolean> {
    let runs: RunInfo[];
    try {
      runs = await fetchRuns();
    } catch (error) {
      if (!this.runs.length) this.message.textContent = `Could not load the runs: ${error}. TensorBoard's reload tries again.`;
      return false; // the next reload tries again; what is drawn stays
    }
    return this.accept(runs);
  }

  /** Polls the runs lightly: often while a shown run grows (TensorBoard 2.21 ships with its reload off), rarely otherwise. */
  private schedulePoll(): void {
    window.clearTimeout(this.pollTimer);
    this.pollTimer = window.setTimeout(async () => {
      const grew = document.visibilityState === 'hidden' ? false : await this.reload();
      this.pollDelay = grew ? POLL_FAST_MS : Math.min(POLL_SLOW_MS, this.pollDelay * 2);
      this.live.hidden = !grew && this.live.hidden;
      if (grew) this.live.textContent = `Training in progress: new steps appear here as they are logged (checked every ${POLL_FAST_MS / 1000} s while the run grows; TensorBoard's reload button also fetches them).`;
      this.schedulePoll();
    }, this.pollDelay);
  }

  /** Takes a `runs` answer (every run, usable or not): shows the empty state, or draws what changed. */
  private accept(all: RunInfo[]): boolean {
    if (!all.some(hasData)) {
      this.showEmpty(all);
      this.runs = all;
      return false;
    }
    const first = !this.runs.some(hasData);
    const version = (list: RunInfo[]) => list.map((r) => `${r.run}=${analysisVersion(r)}|${Object.values(r.scalar_versions).join(',')}`).join('\n');
    const before = version(this.runs);
    this.runs = all;
    if (first) {
      this.message.hidden = true;
      this.change({});
      return true;
    }
    if (version(all) === before) return false;
    this.change({});
    return true;
  }

  /** Nothing to draw in any run: says how to log attributions, or lists why the methods that ran failed. */
  private showEmpty(all: RunInfo[]): void {
    const items = all.flatMap((run) => this.failureItems(run, true));
    this.message.hidden = false;
    this.message.textContent = items.length
      ? 'No attributions logged yet: every method the callback ran failed. The reasons:'
      : 'No attributions logged yet. Add tb_xai.AttributionCallback(...) to model.fit(callbacks=[...]) and point TensorBoard at its log_dir.';
    this.failures.replaceChildren(...items);
    this.failures.hidden = items.length === 0;
    this.cards.hidden = true;
  }

  private failureItems(run: RunInfo, named: boolean): HTMLLIElement[] {
    return run.methods
      .filter((m) => m.failures.length > 0)
      .map((m) => {
        const first = m.failures[0];
        const where = m.inputs.length ? `failed at ${m.failures.length} step${m.failures.length === 1 ? '' : 's'}` : `failed at every step (${m.failures.length})`;
        const text = `${named ? `${run.run}: ` : ''}${m.method} ${where}; at step ${first.step}: ${first.message}`;
        return el('li', { title: text }, text);
      });
  }

  private change(change: Partial<Selection>): void {
    const next = { ...this.selection, ...change };
    if (change.run !== undefined && change.run !== this.selection.run) {
      this.classNames = [];
      next.probe = 0;
    }
    const run = this.runs.find((r) => r.run === next.run) ?? latestRun(this.runs) ?? this.runs[0];
    if (run?.class_names.length) this.classNames = run.class_names;
    const classCount = run ? Math.max(run.class_count, this.classNames.length) : 0;
    this.selection = consistent(next, this.runs, classCount);
    saveSelection(this.selection);
    this.controls.show(this.runs, this.selection, this.classNames);
    const shown = this.runs.find((r) => r.run === this.selection.run)!;
    this.failures.replaceChildren(...this.failureItems(shown, false));
    this.failures.hidden = this.failures.childElementCount === 0;
    if (!hasData(shown)) {
      // A run whose methods failed at every step: the strip says why; no card has anything to draw.
      this.message.hidden = false;
      this.message.textContent = `${shown.run} has no attributions to draw${this.failures.childElementCount ? ': every method the callback ran failed. The reasons:' : ' yet.'}`;
      this.cards.hidden = true;
      this.generation++;
      return;
    }
    this.message.hidden = true;
    this.cards.hidden = false;
    this.refresh();
    this.labelTextProbes();
  }

  /** Names a text input's probes by their first words in the probe menu (from the `tokens` route). */
  private labelTextProbes(): void {
    const s = this.selection;
    const run = this.runs.find((r) => r.run === s.run);
    const key = run && isTextInput(run, s.method, s.input) ? `${run.run}\n${s.input}` : '';
    if (key !== this.probeTextsKey) this.controls.setProbeTexts(null); // never another run's or input's words
    this.probeTextsKey = key;
    if (!run || !key) return;
    const generation = this.generation;
    const query: Query = { run: run.run, method: s.method, input: s.input, target: s.target, signed: s.signed, version: run.version };
    fetchTokens(query).then(
      (answer) => {
        if (generation === this.generation) this.controls.setProbeTexts(answer.tokens.map((tokens, i) => firstWords(tokens, answer.padding[i] ?? [])));
      },
      () => {
        if (generation === this.generation) this.controls.setProbeTexts(null); // the menu keeps its plain labels
      },
    );
  }

  private context(): ViewContext {
    const s = this.selection;
    const names = [s.run, ...otherRuns(s)];
    const shown = (name: string): Shown => {
      const info = this.runs.find((r) => r.run === name)!;
      const query: Query = { run: name, method: s.method, input: s.input, target: s.target, signed: s.signed, version: info.version };
      return { info, color: runColor(names, name), query };
    };
    const runs = [s.run, ...otherRuns(s)]
      .filter((name) => {
        const info = this.runs.find((r) => r.run === name);
        return info?.methods.some((m) => m.method === s.method && m.inputs.some((i) => i.input === s.input));
      })
      .map(shown);
    const primary = runs[0] ?? shown(s.run);
    const explained = runs.find((r) => r.info.run === s.probeRun) ?? primary;
    return { selection: s, primary, runs: runs.length ? runs : [primary], explained, classNames: this.classNames };
  }

  /** Opens what shows a finding: its method, input, probe and step selected, its card scrolled into view. */
  private open(finding: Finding): void {
    const o = finding.open;
    const change: Partial<Selection> = {};
    if (o.method !== null) change.method = o.method;
    if (o.input !== null) change.input = o.input;
    if (o.probe !== null) change.probe = o.probe;
    if (o.step !== null) this.probe.setStep(o.step); // kept when the probe explorer redraws for the new selection
    this.pendingScroll = o.view;
    this.change(change);
  }

  private scrollTo(card: HTMLElement): void {
    card.style.scrollMarginTop = `${this.controls.element.offsetHeight + 8}px`; // clear of the sticky selection bar
    card.scrollIntoView({ block: 'start' });
  }

  /** Fetches the probe menu (labels, predictions at the probe explorer's step, flips, changes) soon. */
  private scheduleProbeMenu(): void {
    window.clearTimeout(this.menuTimer);
    this.menuTimer = window.setTimeout(() => {
      if (!this.runs.some(hasData)) return;
      const query = this.context().explained.query;
      const key = `${query.run}|${query.method}|${query.input}|${query.version}|${this.probeStep}`;
      if (key === this.menuKey) return;
      this.menuKey = key;
      const step = this.probeStep;
      // A step the menu's method did not log (another method's): the menu at its last step.
      fetchProbeMenu(query, step).catch(() => fetchProbeMenu(query, null)).then(
        (menu) => key === this.menuKey && this.controls.showProbeMenu(menu),
        () => key === this.menuKey && this.controls.showProbeMenu(null),
      );
    }, 120);
  }

  private refresh(): void {
    const generation = ++this.generation;
    const context = this.context();
    if (this.menuKey && !this.menuKey.startsWith(`${context.explained.query.run}|`)) this.controls.showProbeMenu(null);
    this.scheduleProbeMenu();
    const current = () => generation === this.generation;
    let painted: Promise<unknown> = Promise.resolve();
    for (const view of [this.evolution, ...this.views.filter((v) => v !== this.evolution)]) {
      const card = view.card;
      card.setStatus('Loading…');
      card.element.setAttribute('aria-busy', 'true');
      // The analysis cards (their answers cost the server most) ask once the evolution card has its data.
      const loaded = this.deferred.has(view) ? painted.then(() => view.load(context)) : view.load(context);
      if (view === this.evolution) painted = loaded.catch(() => undefined);
      loaded.then(
        (draw) => {
          if (!current()) return;
          card.setStatus('');
          card.element.removeAttribute('aria-busy');
          this.draws.set(view, draw);
          draw(card.figure.clientWidth);
          if (view === this.evolution) this.noteFirstPaint();
          if (this.pendingScroll === card.element.id) {
            this.pendingScroll = null;
            this.scrollTo(card.element);
          }
        },
        (error: unknown) => {
          if (!current()) return;
          // Nothing of the previous selection stays: no chart, no note, no redraw on resize.
          this.draws.delete(view);
          view.clear();
          card.element.removeAttribute('aria-busy');
          card.setStatus(String(error instanceof Error ? error.message : error));
        },
      );
    }
  }

  private redrawAll(): void {
    this.draws.forEach((draw, view) => draw(view.card.figure.clientWidth));
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
