// The stability card: are the explanations settled? Rank correlation and top-k overlap of the global
// importance between consecutive steps, and against the last step.

import { lineColors } from '../colors';
import { formatValue } from '../dom';
import { fileStem } from '../export';
import { Stability, analysisVersion, fetchStability } from '../model';
import { Card, Table } from './card';
import { Band, Lines, Series } from './lines';
import { Draw, Shown, View, ViewContext } from './view';

const SETTLED_RHO = 0.9;
const SETTLED_OVERLAP = 0.8;

export interface StabilityEvents {
  settled: number | null; // the step from which every next step keeps the ranking
  shift: { step: number; rho: number } | null; // the step whose ranking moved most from the step before
}

/** When the ranking settled and where it shifted most, from the consecutive-step series. */
export function stabilityEvents(s: Stability): StabilityEvents {
  const keeps = (i: number) =>
    (s.spearman_previous[i] ?? -Infinity) >= SETTLED_RHO && (s.topk_previous[i] ?? -Infinity) >= SETTLED_OVERLAP;
  let first = s.steps.length;
  while (first > 1 && keeps(first - 1)) first--;
  const settled = first < s.steps.length ? s.steps[first - 1] : null;
  let shift: StabilityEvents['shift'] = null;
  s.spearman_previous.forEach((rho, i) => {
    if (rho !== null && rho < SETTLED_RHO && (!shift || rho < shift.rho)) shift = { step: s.steps[i], rho };
  });
  return { settled, shift };
}

const NOISE_TEXT = 'Shaded: the noise band, from the noise floor of ρ to 1 (probe sets resampled; for sampling methods also a second seed): a ρ with the previous step inside it could come from the choice of probes or the sampling alone.';

/**
 * The band from the lowest noise floor of ρ to 1 at every step with a floor (the bootstrap over probes, and for
 * sampling methods the agreement between two seeds); null when the server sent none.
 */
export function noiseBand(s: Stability, color: string, suffix: string): Band | null {
  const noise = s.noise;
  if (!noise) return null;
  const lo = s.steps.map((_, i) => {
    const floors = [noise.spearman_floor[i], noise.seed_spearman?.[i]].filter((v): v is number => v !== null && v !== undefined && Number.isFinite(v));
    return floors.length ? Math.min(...floors) : null;
  });
  if (!lo.some((v) => v !== null)) return null;
  return { name: `noise band of ρ${suffix}`, color, steps: s.steps, lo, hi: lo.map((v) => (v === null ? null : 1)) };
}

export class StabilityView implements View {
  readonly card: Card;
  private readonly lines = new Lines(170);
  private current: { answers: Stability[]; runs: Shown[]; method: string } | null = null;

  constructor() {
    this.card = new Card({
      id: 'stability',
      title: 'Explanation stability',
      fileName: () => fileStem('stability', ...(this.current?.runs.map((r) => r.info.run) ?? []), this.current?.method ?? ''),
      table: () => this.table(),
    });
  }

  clear(): void {
    this.current = null;
    this.card.clear();
  }

  async load(context: ViewContext): Promise<Draw> {
    const answers = await Promise.all(context.runs.map((r) => fetchStability(r.query, context.selection.k, analysisVersion(r.info))));
    return (width) => {
      this.current = { answers, runs: context.runs, method: context.selection.method };
      this.draw(width);
    };
  }

  private draw(width: number): void {
    const { answers, runs, method } = this.current!;
    const compared = runs.length > 1;
    const k = answers[0].k;
    let series: Series[];
    const bands = answers.map((a, i) => noiseBand(a, compared ? runs[i].color : lineColors[0], compared ? ` · ${runs[i].info.run}` : ''))
      .filter((b): b is Band => b !== null);
    const annotations: { step: number; text: string }[] = [];
    if (compared) {
      // One colour per run: ρ and the top-k overlap with the previous step.
      series = answers.flatMap((a, i) => [
        { name: `ρ, previous step · ${runs[i].info.run}`, color: runs[i].color, steps: a.steps, values: a.spearman_previous },
        { name: `top-${a.k} overlap, previous step · ${runs[i].info.run}`, color: runs[i].color, steps: a.steps, values: a.topk_previous, dashed: true },
      ]);
    } else {
      const stability = answers[0];
      const { steps } = stability;
      const events = stabilityEvents(stability);
      if (events.settled !== null) annotations.push({ step: events.settled, text: 'settled' });
      if (events.shift) annotations.push({ step: events.shift.step, text: 'largest shift' });
      series = [
        { name: 'ρ, previous step', color: lineColors[0], steps, values: stability.spearman_previous },
        { name: `top-${k} overlap, previous step`, color: lineColors[1], steps, values: stability.topk_previous },
        { name: 'ρ, last step', color: lineColors[0], steps, values: stability.spearman_last, dashed: true },
        { name: `top-${k} overlap, last step`, color: lineColors[1], steps, values: stability.topk_last, dashed: true },
      ];
    }
    const known = (values: (number | null)[] | undefined) => (values ?? []).filter((v): v is number => v !== null && Number.isFinite(v));
    const lowest = Math.min(0, ...answers.flatMap((a) => [...known(a.spearman_previous), ...known(a.noise?.spearman_floor), ...known(a.noise?.seed_spearman)]));
    this.lines.draw({ series, bands, yLabel: 'agreement', yDomain: [lowest, 1], annotations }, width);
    const band = bands.length ? ` ${NOISE_TEXT}` : '';
    this.card.note.textContent = compared
      ? `Spearman rank correlation (ρ, solid) and top-${k} overlap (dashed) of each run's mean |attribution| ranking with its previous step; colour = run. ${answers.map((a, i) => `${runs[i].info.run}: ${this.settledText(a)}`).join(' ')}${band}`
      : `Spearman rank correlation (ρ) and top-${k} overlap of the mean |attribution| ranking. ${this.settledText(answers[0])}${this.shiftText(answers[0])}${band}`;
    this.card.figure.replaceChildren(this.lines.element);
    this.card.markDrawn(`${runs.map((r) => r.info.run).join('+')}|${method}|${k}`);
  }

  private settledText(stability: Stability): string {
    const { steps, k } = stability;
    const events = stabilityEvents(stability);
    return steps.length < 2
      ? `Only ${steps.length === 1 ? `step ${steps[0]} is` : 'no step is'} logged so far: stability needs two consecutive steps.`
      : events.settled !== null
      ? `Settled from step ${events.settled} (ρ ≥ ${SETTLED_RHO} and top-${k} overlap ≥ ${SETTLED_OVERLAP} at every later step).`
      : 'Not settled yet: the ranking still moves between consecutive steps.';
  }

  private shiftText(stability: Stability): string {
    const events = stabilityEvents(stability);
    if (stability.steps.length < 2 || !events.shift) return '';
    const floor = noiseBand(stability, '', '')?.lo[stability.steps.indexOf(events.shift.step)];
    const noise = floor === null || floor === undefined ? '' : events.shift.rho >= floor ? ', within the noise band' : `, beyond the noise floor ${formatValue(floor)}`;
    return ` Largest shift at step ${events.shift.step} (ρ = ${formatValue(events.shift.rho)}${noise}).`;
  }

  private table(): Table | null {
    if (!this.current) return null;
    const { answers, runs } = this.current;
    const k = answers[0].k;
    return {
      header: ['run', 'step', 'spearman_previous', `top${k}_previous`, 'spearman_last', `top${k}_last`, 'spearman_floor', 'ndcg_floor', 'seed_spearman', 'seed_ndcg'],
      rows: answers.flatMap((s, r) => s.steps.map((step, i) => [runs[r].info.run, step, s.spearman_previous[i], s.topk_previous[i], s.spearman_last[i], s.topk_last[i],
        s.noise?.spearman_floor[i] ?? null, s.noise?.ndcg_floor[i] ?? null, s.noise?.seed_spearman?.[i] ?? null, s.noise?.seed_ndcg?.[i] ?? null])),
    };
  }
}
